package crjob

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
)

// initOutputLines is how many of the last lines of a dead init's output
// the report keeps.
const initOutputLines = 20

// outputTailer is a container whose runtime captured the init's stdout
// and stderr (*container.Container does for an init without a terminal).
type outputTailer interface {
	OutputTail(n int) []string
}

// initOutput is the end of what the container init wrote, or nil when the
// runtime did not capture it.
func initOutput(c Container) []string {
	if o, ok := c.(outputTailer); ok {
		return o.OutputTail(initOutputLines)
	}
	return nil
}

// sendDumpLog sends CRIU's log of a failed dump to the host, which keeps
// it beside the images directory (its end when it is long: CRIU says why
// it failed there).
func (j *cpJob) sendDumpLog(dumpErr error) {
	var ce *criu.Error
	if !errors.As(dumpErr, &ce) || ce.LogPath == "" {
		return
	}
	l, err := readLogTail(ce.LogPath, agentapi.MaxDumpLog)
	if err != nil {
		j.d.Host.Logf("the dump log %s cannot be sent: %v", ce.LogPath, err)
		return
	}
	if err := j.d.Host.Result(agentapi.ResultDumpLog, l); err != nil {
		j.d.Host.Logf("send the dump log: %v", err)
	}
}

// readLogTail reads at most limit bytes from the end of the log at p.
func readLogTail(p string, limit int64) (agentapi.DumpLog, error) {
	f, err := os.Open(p)
	if err != nil {
		return agentapi.DumpLog{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return agentapi.DumpLog{}, err
	}
	if !fi.Mode().IsRegular() {
		return agentapi.DumpLog{}, fmt.Errorf("%s is not a regular file", p)
	}
	off := max(0, fi.Size()-limit)
	data, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return agentapi.DumpLog{}, err
	}
	return agentapi.DumpLog{Text: string(data), Truncated: off > 0}, nil
}
