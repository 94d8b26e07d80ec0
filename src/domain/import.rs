//! What an import job is: its life from the file it waits for to its end.

use super::consent::string_enum;

string_enum! {
    /// An import job: it waits for its file (unless the file came with it), is queued, runs
    /// chunk by chunk (a job whose instance died is taken over once its lease passes), and
    /// ends finished or failed.
    ImportStatus {
        AwaitingFile = "awaiting_file",
        Queued = "queued",
        Running = "running",
        Finished = "finished",
        Failed = "failed",
    }
}

impl ImportStatus {
    /// Where a new job starts.
    pub fn new_job(with_file: bool) -> Self {
        if with_file { Self::Queued } else { Self::AwaitingFile }
    }

    /// Whether a file may be given to it now (once, before it is queued).
    pub fn accepts_file(self) -> bool {
        self == Self::AwaitingFile
    }

    /// Where a run ends.
    pub fn after_run(failed: bool) -> Self {
        if failed { Self::Failed } else { Self::Finished }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_takes_one_file_before_it_is_queued_and_ends_finished_or_failed() {
        assert_eq!(ImportStatus::new_job(false), ImportStatus::AwaitingFile);
        assert_eq!(ImportStatus::new_job(true), ImportStatus::Queued);
        let accepting: Vec<_> = ImportStatus::ALL.iter().filter(|s| s.accepts_file()).collect();
        assert_eq!(accepting, [&ImportStatus::AwaitingFile]);
        assert_eq!(ImportStatus::after_run(true), ImportStatus::Failed);
        assert_eq!(ImportStatus::after_run(false), ImportStatus::Finished);
        assert_eq!("awaiting_file".parse::<ImportStatus>(), Ok(ImportStatus::AwaitingFile));
    }
}
