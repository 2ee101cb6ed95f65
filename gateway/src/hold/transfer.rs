//! The wire between an edge process and the one that takes its place
//! (`torpor upgrade`), over the old one's `run/edge-<i>.handover` socket:
//!
//! 1. new → old: `TORPORHO`, then the handover version (u32 LE);
//! 2. old → new: the state's length (u64 LE) and the number of descriptors
//!    (u32 LE), the state (an encoded `CoreState` of the edge core),
//!    then the descriptors, at most 250 per message, each
//!    message one byte carrying them as `SCM_RIGHTS`;
//! 3. new → old: `K` once it serves them all. Until then the old process
//!    holds every connection too, and goes on serving if `K` never comes.

use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

const MAGIC: &[u8; 8] = b"TORPORHO";
/// Bumped whenever the state's layout changes: an edge refuses to hand
/// over to a binary of another version, and goes on serving.
pub const HANDOVER_VERSION: u32 = 1;
/// Below the kernel's limit of 253 descriptors per message.
const FDS_PER_MESSAGE: usize = 250;
/// The most a step of the handover may take before the old process gives
/// up and goes on serving.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest state accepted: far above what a full edge holds (20,000
/// sockets with 16 KiB attachments and full queues would not reach it).
const MAX_STATE_BYTES: u64 = 4 << 30;

/// Where edge `index`'s process takes handover requests.
pub fn socket_path(run_dir: &Path, index: u16) -> PathBuf {
    run_dir.join(format!("edge-{index}.handover"))
}

/// The new process asks for the edge.
pub fn ask(stream: &mut UnixStream) -> io::Result<()> {
    let mut hello = MAGIC.to_vec();
    hello.extend_from_slice(&HANDOVER_VERSION.to_le_bytes());
    stream.write_all(&hello)
}

/// The old process reads the ask; an error says why it will not hand over.
pub fn read_ask(stream: &mut UnixStream) -> Result<(), String> {
    let mut hello = [0u8; 12];
    stream
        .read_exact(&mut hello)
        .map_err(|err| format!("no handover request: {err}"))?;
    if &hello[..8] != MAGIC {
        return Err("not a handover request".to_owned());
    }
    let version = u32::from_le_bytes([hello[8], hello[9], hello[10], hello[11]]);
    if version != HANDOVER_VERSION {
        return Err(format!(
            "the new edge speaks handover version {version}, this one {HANDOVER_VERSION}"
        ));
    }
    Ok(())
}

/// Whether the peer runs as this process's user: only the node's own
/// processes may take its sockets.
pub fn same_user(stream: &UnixStream) -> bool {
    rustix::net::sockopt::socket_peercred(stream)
        .is_ok_and(|peer| peer.uid == rustix::process::geteuid())
}

/// Sends the state and the descriptors.
pub fn send(stream: &mut UnixStream, state: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let mut header = (state.len() as u64).to_le_bytes().to_vec();
    let count = u32::try_from(fds.len()).map_err(|_| io::Error::other("too many descriptors"))?;
    header.extend_from_slice(&count.to_le_bytes());
    stream.write_all(&header)?;
    stream.write_all(state)?;
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_MESSAGE))];
    for chunk in fds.chunks(FDS_PER_MESSAGE) {
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(chunk)) {
            return Err(io::Error::other("descriptors do not fit the message"));
        }
        let sent = sendmsg(
            &*stream,
            &[IoSlice::new(b"F")],
            &mut control,
            SendFlags::empty(),
        )?;
        if sent != 1 {
            return Err(io::Error::other("descriptors not sent"));
        }
    }
    Ok(())
}

/// Receives the state and the descriptors, in the order they were sent.
pub fn receive(stream: &mut UnixStream) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut header = [0u8; 12];
    stream.read_exact(&mut header)?;
    let mut len = [0u8; 8];
    len.copy_from_slice(&header[..8]);
    let len = u64::from_le_bytes(len);
    if len > MAX_STATE_BYTES {
        return Err(io::Error::other(format!("a state of {len} bytes")));
    }
    let count = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
    let mut state = vec![0u8; usize::try_from(len).map_err(io::Error::other)?];
    // Exactly the state: a read past it would drop the descriptors that
    // ride on the next byte.
    stream.read_exact(&mut state)?;
    let mut fds = Vec::with_capacity(count);
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_MESSAGE))];
    while fds.len() < count {
        let mut byte = [0u8; 1];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let received = recvmsg(
            &*stream,
            &mut [IoSliceMut::new(&mut byte)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )?;
        if received.bytes == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the old edge stopped sending descriptors",
            ));
        }
        let before = fds.len();
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = message {
                fds.extend(received);
            }
        }
        if fds.len() == before {
            return Err(io::Error::other("a descriptor message without descriptors"));
        }
    }
    Ok((state, fds))
}

/// The new process serves everything it was sent.
pub fn acknowledge(stream: &mut UnixStream) -> io::Result<()> {
    stream.write_all(b"K")
}

/// Whether the new process said it serves everything.
pub fn read_acknowledgement(stream: &mut UnixStream) -> io::Result<()> {
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte)?;
    match &byte {
        b"K" => Ok(()),
        _ => Err(io::Error::other("not an acknowledgement")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn state_and_hundreds_of_descriptors_arrive_in_order() {
        let (mut old, mut new) = UnixStream::pair().unwrap();
        ask(&mut new).unwrap();
        read_ask(&mut old).unwrap();
        // 600 descriptors: three messages. Each is one end of a pair whose
        // other end stays here, to tell them apart on arrival.
        let pairs: Vec<(UnixStream, UnixStream)> =
            (0..600).map(|_| UnixStream::pair().unwrap()).collect();
        let state: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let sender = std::thread::spawn({
            let fds: Vec<OwnedFd> = pairs
                .iter()
                .map(|(a, _)| a.as_fd().try_clone_to_owned().unwrap())
                .collect();
            let state = state.clone();
            move || {
                let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
                send(&mut old, &state, &borrowed).unwrap();
                read_acknowledgement(&mut old).unwrap();
            }
        });
        let (got, fds) = receive(&mut new).unwrap();
        assert_eq!(got, state);
        assert_eq!(fds.len(), 600);
        for (i, fd) in fds.into_iter().enumerate() {
            let mut ours = UnixStream::from(fd);
            ours.write_all(&[i as u8]).unwrap();
            let mut byte = [0u8; 1];
            pairs[i]
                .1
                .try_clone()
                .unwrap()
                .read_exact(&mut byte)
                .unwrap();
            assert_eq!(byte[0], i as u8, "descriptor {i} out of order");
        }
        acknowledge(&mut new).unwrap();
        sender.join().unwrap();
    }

    #[test]
    fn another_version_is_refused() {
        let (mut old, mut new) = UnixStream::pair().unwrap();
        let mut hello = MAGIC.to_vec();
        hello.extend_from_slice(&(HANDOVER_VERSION + 1).to_le_bytes());
        new.write_all(&hello).unwrap();
        let err = read_ask(&mut old).unwrap_err();
        assert!(err.contains("handover version"), "{err}");
        assert!(same_user(&old));
    }
}
