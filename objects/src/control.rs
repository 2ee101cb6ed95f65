//! The supervisor's control frames on a child's stdin, read blocking: the
//! `Setup` every child starts from, then (for a worker) `Retire`; and the
//! child's `Ready` on its stdout.

use bytes::BytesMut;
use std::io::{self, Read};
use torpor_proto::ipc::{self, ToChild, ToSupervisor};

/// Control frames from a byte stream, normally stdin.
pub struct ControlIn<R> {
    reader: R,
    buf: BytesMut,
}

impl ControlIn<io::Stdin> {
    /// This process's stdin.
    pub fn stdin() -> ControlIn<io::Stdin> {
        ControlIn::new(io::stdin())
    }
}

impl<R: Read> ControlIn<R> {
    /// Frames read from `reader`.
    pub fn new(reader: R) -> ControlIn<R> {
        ControlIn {
            reader,
            buf: BytesMut::new(),
        }
    }

    /// The next frame, waiting for it; `None` once the stream ends.
    pub fn next_frame(&mut self) -> io::Result<Option<ToChild>> {
        let mut chunk = [0u8; 4096];
        loop {
            match ipc::split_frame(&mut self.buf) {
                Ok(Some(frame)) => {
                    return ToChild::decode(frame)
                        .map(Some)
                        .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))
                }
                Ok(None) => {}
                Err(err) => return Err(io::Error::new(io::ErrorKind::InvalidData, err)),
            }
            let n = match self.reader.read(&mut chunk) {
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The `Setup` frame's JSON, which must come first.
    pub fn setup(&mut self) -> io::Result<bytes::Bytes> {
        match self.next_frame()? {
            Some(ToChild::Setup { json }) => Ok(json),
            Some(other) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected Setup from the supervisor first, got {other:?}"),
            )),
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "no Setup on stdin: edges and workers are started by the supervisor \
                 (run the binary without a subcommand)",
            )),
        }
    }
}

/// Tells the supervisor, on stdout, that this process serves.
pub fn announce_ready() {
    use std::io::Write;
    let mut frame = ipc::CONTROL_MARK.to_vec();
    ToSupervisor::Ready {
        version: ipc::VERSION,
        pid: std::process::id(),
    }
    .encode(&mut frame);
    let mut stdout = io::stdout().lock();
    if let Err(err) = stdout.write_all(&frame).and_then(|()| stdout.flush()) {
        tracing::warn!(%err, "cannot tell the supervisor this process is ready");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_over_reads_arrive_whole_and_in_order() {
        let mut bytes = Vec::new();
        ToChild::Setup {
            json: bytes::Bytes::from_static(b"{\"a\":1}"),
        }
        .encode(&mut bytes);
        ToChild::Retire.encode(&mut bytes);
        // One byte per read, as a pipe may deliver them.
        struct Trickle(Vec<u8>, usize);
        impl Read for Trickle {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let Some(&byte) = self.0.get(self.1) else {
                    return Ok(0);
                };
                buf[0] = byte;
                self.1 += 1;
                Ok(1)
            }
        }
        let mut control = ControlIn::new(Trickle(bytes, 0));
        assert_eq!(&control.setup().unwrap()[..], b"{\"a\":1}");
        assert_eq!(control.next_frame().unwrap(), Some(ToChild::Retire));
        assert_eq!(control.next_frame().unwrap(), None);
    }

    #[test]
    fn a_child_without_its_setup_says_who_starts_it() {
        let err = ControlIn::new(io::empty()).setup().unwrap_err();
        assert!(
            err.to_string().contains("started by the supervisor"),
            "{err}"
        );
    }
}
