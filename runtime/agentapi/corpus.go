package agentapi

import "github.com/kata-cr/kata-cr/reports"

// CorpusOptions are the Options of a corpus job: the checkpoint job of each
// entry, run one after the other in the one guest. The job's Fix field is
// --auto-fix for all of them.
type CorpusOptions struct {
	Entries []CorpusCheckpoint `json:"entries"`
}

// CorpusCheckpoint is one entry of a corpus job.
type CorpusCheckpoint struct {
	// Name is the entry's name in the corpus (unique in the job); it
	// names the entry's directory in the guest.
	Name       string            `json:"name"`
	Checkpoint CheckpointOptions `json:"checkpoint"`
}

// CorpusRestoreOptions are the Options of a corpus restore job: the
// restore job of each entry whose checkpoint was saved, run one after the
// other in the one fresh guest. Each entry's images follow on the DataPort
// when the agent asks for them, after it announced the entry.
type CorpusRestoreOptions struct {
	Entries []CorpusRestore `json:"entries"`
}

// CorpusRestore is one entry of a corpus restore job.
type CorpusRestore struct {
	Name    string         `json:"name"`
	Restore RestoreOptions `json:"restore"`
}

// The result events of the corpus jobs (Event.Stage): ResultCorpusEntry
// (data CorpusEntry) announces the entry the events that follow belong
// to, ResultCorpusReport (data CorpusReport) carries its report.
const (
	ResultCorpusEntry  = "corpus-entry"
	ResultCorpusReport = "corpus-report"
)

// CorpusEntry announces an entry of a corpus job.
type CorpusEntry struct {
	Index int    `json:"index"`
	Name  string `json:"name"`
}

// CorpusReport is an entry's report; Error says why the entry's job ended
// without one being complete (the job goes on with the next entry).
type CorpusReport struct {
	CorpusEntry
	Report *reports.Report `json:"report,omitempty"`
	Error  string          `json:"error,omitempty"`
}
