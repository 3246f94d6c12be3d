package crjob

import (
	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/reports"
)

// dumpTiming is the freeze of a dump as CRIU's statistics give it; without
// them (a CRIU that wrote none), the dump's whole duration stands in: the
// tree is frozen for at most that long.
func dumpTiming(res *criu.DumpResult) *reports.Timing {
	t := &reports.Timing{FreezeSeconds: res.Duration.Seconds()}
	st, err := criu.ReadDumpStats(res.ImagesDir)
	if err != nil {
		return t
	}
	if f := st.Freeze(); f > 0 {
		t.FreezeSeconds = f.Seconds()
	}
	t.MemdumpSeconds = st.MemdumpTime.Seconds()
	t.MemwriteSeconds = st.MemwriteTime.Seconds()
	t.PagesWritten = st.PagesWritten
	t.PagesSkippedParent = st.PagesSkippedParent
	return t
}
