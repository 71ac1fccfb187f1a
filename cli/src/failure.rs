//! How failures reach the user: one line `ipc-codec: <reason>` on standard error and an
//! exit status that says which kind of failure it was.

use std::fmt;
use std::process::ExitCode;

use ipc_bench::{BenchError, BenchErrorKind};
use ipc_codec::encoder::EncodeError;
use ipc_codec::{Error, FormatError, PackError};

/// Exit statuses (listed in `ipc-codec --help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// 1: anything else, mostly I/O (missing input, unwritable output).
    Other = 1,
    /// 2: the command line is wrong (also clap's own errors).
    Usage = 2,
    /// 3: the input is not a valid `.ipc` file (truncated, damaged, malformed), or for
    /// `encode` a damaged PNG, JPEG or WAV file.
    Invalid = 3,
    /// 4: the file is valid but uses something unsupported or exceeds a limit.
    Unsupported = 4,
    /// 5: the model pack cannot be read, or is not the one the file needs.
    Pack = 5,
    /// 6: `encode --strict-target` and no level reaches the target.
    TargetMissed = 6,
}

impl Category {
    pub fn exit_code(self) -> ExitCode {
        ExitCode::from(self as u8)
    }
}

/// An error the CLI itself raises, with its category. Used either as the error or as
/// context around a library error, to override the category found in the chain.
#[derive(Debug)]
pub struct Failure {
    pub category: Category,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            category: Category::Usage,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Failure {
        Failure {
            category: Category::Invalid,
            message: message.into(),
        }
    }

    pub fn unsupported(message: impl Into<String>) -> Failure {
        Failure {
            category: Category::Unsupported,
            message: message.into(),
        }
    }

    pub fn target_missed(message: impl Into<String>) -> Failure {
        Failure {
            category: Category::TargetMissed,
            message: message.into(),
        }
    }

    pub fn pack(message: impl Into<String>) -> Failure {
        Failure {
            category: Category::Pack,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The category of an error: the outermost [`Failure`] (or error of `bench`'s own) if
/// there is one, otherwise the first library error in the chain.
pub fn categorise(err: &anyhow::Error) -> Category {
    if let Some(f) = err.downcast_ref::<Failure>() {
        return f.category;
    }
    if let Some(e) = err.downcast_ref::<BenchError>() {
        return match e.kind {
            BenchErrorKind::Usage => Category::Usage,
            BenchErrorKind::Pack => Category::Pack,
        };
    }
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<Error>() {
            return library_category(e);
        }
        if let Some(e) = cause.downcast_ref::<EncodeError>() {
            return match e {
                EncodeError::MethodUnavailable { .. } | EncodeError::PackTensor { .. } => {
                    Category::Pack
                }
                // The CLI checks modality, levels and targets itself first; what is
                // left is a signal the pack cannot code.
                EncodeError::Input(_) => Category::Unsupported,
                EncodeError::LimitExceeded { .. } => Category::Unsupported,
                EncodeError::Codec(e) => library_category(e),
                _ => Category::Other,
            };
        }
        if cause.is::<FormatError>() {
            return Category::Invalid;
        }
        if cause.is::<PackError>() {
            return Category::Pack;
        }
    }
    Category::Other
}

fn library_category(e: &Error) -> Category {
    match e {
        Error::Format(_) => Category::Invalid,
        Error::Unsupported(_) | Error::LimitExceeded { .. } => Category::Unsupported,
        Error::InvalidArgument(_) => Category::Usage,
        Error::WrongPack { .. } | Error::PackMismatch { .. } | Error::Pack(_) => Category::Pack,
        _ => Category::Other,
    }
}

/// The whole chain of causes on one line (the bench's formatter: one copy for both).
pub use ipc_bench::one_line;

/// Reports an error as `ipc-codec: <reason>` and returns its exit status.
pub fn report(err: &anyhow::Error) -> ExitCode {
    eprintln!("ipc-codec: {}", one_line(err));
    categorise(err).exit_code()
}

/// Handles a command-line parsing failure: help and version go to standard output
/// with status 0; a usage error becomes one line with status 2.
pub fn report_clap(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = err.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            Category::Usage.exit_code()
        }
        _ => {
            // clap's message is a paragraph (`error: ...`, indented details), then tips
            // and usage; keep the first paragraph, joined into one line.
            let text = err.to_string();
            let first: Vec<&str> = text
                .lines()
                .map(str::trim)
                .skip_while(|l| l.is_empty())
                .take_while(|l| !l.is_empty())
                .collect();
            let msg = first.join(" ");
            let msg = msg.strip_prefix("error: ").unwrap_or(&msg);
            eprintln!("ipc-codec: {msg} (see ipc-codec --help)");
            Category::Usage.exit_code()
        }
    }
}
