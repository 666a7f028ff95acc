//! Glue to `embedded-sdmmc`: its errors as ours, and its directories reached by 8.3 names.

extern crate alloc;

use super::dir::{self, DirLoc};
use super::{name, FatFs};
use alloc::string::String;
use embedded_sdmmc::{RawDirectory, ShortFileName};
use exo_libos::fs::disk::{BlockDevice, IoError};
use exo_libos::fs::{Error, Result};

/// The crate's error as ours.
pub fn sd(e: embedded_sdmmc::Error<IoError>) -> Error {
    use embedded_sdmmc::Error as E;
    use embedded_sdmmc::FilenameError as F;
    match e {
        E::DeviceError(d) => d.into(),
        E::NotFound => Error::NotFound,
        E::FileAlreadyExists | E::DirAlreadyExists => Error::Exists,
        E::ReadOnly => Error::ReadOnly,
        E::DiskFull | E::NotEnoughSpace => Error::NoSpace,
        E::FilenameError(F::NameTooLong) => Error::NameTooLong,
        E::FilenameError(_) => Error::InvalidName,
        E::TooManyOpenFiles | E::TooManyOpenDirs | E::TooManyOpenVolumes => Error::TooManyOpenFiles,
        E::OpenedDirAsFile => Error::IsDir,
        E::OpenedFileAsDir => Error::NotDir,
        E::DeleteNonEmptyDir => Error::NotEmpty,
        E::FileAlreadyOpen | E::DirAlreadyOpen | E::VolumeStillInUse | E::VolumeAlreadyOpen => Error::Busy,
        E::Unsupported | E::BadBlockSize(_) => Error::Unsupported,
        E::InvalidOffset => Error::InvalidArgument,
        E::FormatError(_)
        | E::BadCluster
        | E::EndOfFile
        | E::UnterminatedFatChain
        | E::AllocationError
        | E::ConversionError => Error::Corrupt,
        E::NoSuchVolume | E::BadHandle | E::LockError => Error::Io,
    }
}

impl<S: BlockDevice> FatFs<S> {
    /// The crate's name for 8.3 name `sfn`.
    pub(super) fn crate_name(sfn: &[u8; 11]) -> Result<ShortFileName> {
        if let Some(n) = name::crate_string(sfn).and_then(|s| ShortFileName::create_from_str(&s).ok()) {
            return Ok(n);
        }
        // A stored name the crate's parser would refuse (a lower-case or punctuation byte):
        // the volume-label constructor keeps all 11 bytes as they are.
        let s: String = sfn.iter().map(|&b| char::from(b)).collect();
        let label = embedded_sdmmc::VolumeName::create_from_str(&s).map_err(|_| Error::Unsupported)?;
        // SAFETY: the safety condition is that the bytes name a real entry and are not made
        // up from a label; these 11 bytes were read from an existing 8.3 entry.
        Ok(unsafe { label.to_short_filename() })
    }

    /// Opens, in the crate, the directory the 8.3 names lead to; the caller closes it.
    pub(super) fn crate_dir(&self, names: &[[u8; 11]]) -> Result<RawDirectory> {
        self.check_crate_path(names)?;
        let mut d = self.vm.open_root_dir(self.vol).map_err(sd)?;
        for n in names {
            let r = Self::crate_name(n).and_then(|n| self.vm.open_dir(d, n).map_err(sd));
            let _ = self.vm.close_dir(d);
            d = r?;
        }
        Ok(d)
    }

    /// Fails with [`Error::Corrupt`] unless the chain of every directory the crate walks on
    /// its way to the one `names` lead to, and that one's, ends within the largest
    /// directory size ([`dir::check_chain`]): every walk the crate then makes in them ends,
    /// even on a volume whose chains loop. The directories are found as the crate finds
    /// them ([`dir::Dir::crate_subdir`]). The crate's own FAT writes in the operation cannot
    /// close a loop (they link in only free clusters, each ending the chain), so the check
    /// holds for the operation.
    fn check_crate_path(&self, names: &[[u8; 11]]) -> Result<()> {
        let mut loc = DirLoc::Root;
        for n in names {
            self.with_part(|p, g| dir::check_chain(p, g, loc))?;
            loc = self.read_dir(loc)?.crate_subdir(n, &self.geo)?;
        }
        self.with_part(|p, g| dir::check_chain(p, g, loc))
    }

    /// Runs `f` with the crate directory `names` lead to, and closes it.
    pub(super) fn in_crate_dir<R>(
        &self,
        names: &[[u8; 11]],
        f: impl FnOnce(RawDirectory) -> Result<R>,
    ) -> Result<R> {
        let d = self.crate_dir(names)?;
        let r = f(d);
        let c = self.vm.close_dir(d).map_err(sd);
        let v = r?;
        c.map(|_| v)
    }
}
