//! A copy of the built binary for a node to run, that a test replaces the
//! way a deploy does.

use std::path::{Path, PathBuf};

/// A copy of the built binary, run by the node, that a test replaces.
pub struct Deploy {
    dir: tempfile::TempDir,
}

impl Deploy {
    pub fn new() -> Deploy {
        let deploy = Deploy {
            dir: tempfile::tempdir().unwrap(),
        };
        deploy.install_built_binary();
        deploy
    }

    pub fn program(&self) -> PathBuf {
        self.dir.path().join("torpor")
    }

    /// Renames a new file over the program, as a deploy does (writing into
    /// a running executable fails with ETXTBSY).
    pub fn install(&self, write: impl FnOnce(&Path)) {
        let staged = self.dir.path().join("torpor.new");
        write(&staged);
        std::fs::rename(&staged, self.program()).unwrap();
    }

    pub fn install_built_binary(&self) {
        self.install(|path| {
            std::fs::copy(env!("CARGO_BIN_EXE_torpor"), path).unwrap();
        });
    }

    pub fn install_script(&self, script: &str) {
        self.install(|path| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::write(path, format!("#!/bin/sh\n{script}\n")).unwrap();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        });
    }
}
