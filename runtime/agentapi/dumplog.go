package agentapi

// ResultDumpLog tags the result event a checkpoint job sends when CRIU's
// dump failed: its Data is a DumpLog, which the host writes beside the
// images directory.
const ResultDumpLog = "dump-log"

// MaxDumpLog bounds the log a DumpLog carries; a longer one keeps its end,
// where CRIU says why it failed.
const MaxDumpLog = 4 << 20

// DumpLog is CRIU's log of a failed dump.
type DumpLog struct {
	Text string `json:"text"`
	// Truncated says the start of the log was left out (MaxDumpLog).
	Truncated bool `json:"truncated,omitempty"`
}
