package proc

import (
	"fmt"
	"strconv"
	"strings"
)

// Mount is one line of /proc/PID/mountinfo with its paths unescaped.
type Mount struct {
	ID       int
	ParentID int
	// MajMin is "major:minor" of the filesystem.
	MajMin string
	// Root is the path inside the filesystem that is mounted: "/" for a
	// whole filesystem, something else for a bind mount of a subtree.
	Root       string
	MountPoint string
	Options    string
	Optional   []string
	FSType     string
	Source     string
	SuperOpts  string
	Line       string
}

// ParseMountInfo parses /proc/PID/mountinfo. Unlike procfs's MountInfo it
// unescapes the octal escapes (\040 for a space and so on) that the kernel
// writes in paths.
func ParseMountInfo(data []byte) ([]Mount, error) {
	return ParseTable(data, "mountinfo", false, parseMountLine)
}

func parseMountLine(line string) (Mount, error) {
	f := strings.Fields(line)
	bad := func(why string) (Mount, error) {
		return Mount{}, fmt.Errorf("parse mountinfo line %q: %s", line, why)
	}
	if len(f) < 9 {
		return bad("too few fields")
	}
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if sep < 0 || len(f) < sep+3 {
		return bad("no separator")
	}
	id, err1 := strconv.Atoi(f[0])
	parent, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return bad("bad mount id")
	}
	if !strings.Contains(f[2], ":") {
		return bad("bad major:minor")
	}
	m := Mount{
		ID: id, ParentID: parent, MajMin: f[2],
		Root: Unescape(f[3]), MountPoint: Unescape(f[4]),
		Options:  f[5],
		Optional: f[6:sep],
		FSType:   Unescape(f[sep+1]),
		Source:   Unescape(f[sep+2]),
		Line:     line,
	}
	if len(f) > sep+3 {
		m.SuperOpts = f[sep+3]
	}
	return m, nil
}

// Unescape undoes the kernel's mangle() of mountinfo fields: a space,
// tab, newline or backslash is written as a backslash and three octal
// digits.
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Escape writes a path the way the kernel writes it in mountinfo, for
// quoting evidence on one line.
func Escape(s string) string {
	r := strings.NewReplacer(" ", `\040`, "\t", `\011`, "\n", `\012`, `\`, `\134`)
	return r.Replace(s)
}

// MountInfo reads the mount table of pid's mount namespace.
func (f FS) MountInfo(pid int) ([]Mount, error) {
	return readFile(f.Path(pid, "mountinfo"), ParseMountInfo)
}
