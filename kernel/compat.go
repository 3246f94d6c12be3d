package kernel

import (
	"fmt"
	"strconv"
	"strings"
)

// Release is a kernel version: the numbers at the start of a release
// string such as "6.1.0-56-amd64", "7.3.0+deb13-amd64" or
// "6.18.44-fc-v669".
type Release struct {
	Major, Minor, Patch int
}

// ParseRelease reads the leading MAJOR.MINOR[.PATCH] of a kernel release.
func ParseRelease(s string) (Release, error) {
	var nums []int
	rest := strings.TrimPrefix(strings.TrimSpace(s), "v")
	for len(nums) < 3 {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 || i > 9 {
			break
		}
		n, _ := strconv.Atoi(rest[:i])
		nums = append(nums, n)
		rest = rest[i:]
		if !strings.HasPrefix(rest, ".") {
			break
		}
		rest = rest[1:]
	}
	if len(nums) < 2 {
		return Release{}, fmt.Errorf("kernel release %q: want MAJOR.MINOR[.PATCH] at its start, as in 6.1.0-56-amd64", s)
	}
	r := Release{Major: nums[0], Minor: nums[1]}
	if len(nums) == 3 {
		r.Patch = nums[2]
	}
	return r, nil
}

// Less orders releases.
func (r Release) Less(o Release) bool {
	if r.Major != o.Major {
		return r.Major < o.Major
	}
	if r.Minor != o.Minor {
		return r.Minor < o.Minor
	}
	return r.Patch < o.Patch
}

func (r Release) String() string { return fmt.Sprintf("%d.%d.%d", r.Major, r.Minor, r.Patch) }

// CompatIssue is a known incompatibility between a CRIU version and a
// kernel version that no criu check reveals before a dump is tried.
type CompatIssue struct {
	// ID is stable, e.g. "compat.vdso-6.13".
	ID string
	// Blocking is true when every dump or restore fails; false when only
	// some workloads are hit.
	Blocking bool
	// InetSockets says the workloads hit are those with a TCP or UDP
	// socket, listening or not.
	InetSockets bool
	Summary     string
	// Signature is the error CRIU logs when it hits the issue.
	Signature string
	Fix       string
	// Source backs the row.
	Source string
}

// compatRow is one row of the CRIU/kernel compatibility table: the issue
// applies when the kernel is in [KernelFrom, KernelBefore) and CRIU in
// [CRIUFrom, CRIUBefore); a zero bound is open.
type compatRow struct {
	KernelFrom, KernelBefore Release
	CRIUFrom, CRIUBefore     int
	Issue                    CompatIssue
}

var compatTable = []compatRow{
	{
		KernelFrom: Release{6, 13, 0}, CRIUBefore: 40100,
		Issue: CompatIssue{
			ID:        "compat.vdso-6.13",
			Blocking:  true,
			Summary:   "kernels from 6.13 on split the vvar mapping; CRIU before 4.1 cannot parse it and fails on every dump",
			Signature: "vdso: Unexpected rt vDSO area bounds",
			Fix:       "use CRIU 4.1 or later (Debian trixie has 4.1.1), or a guest kernel before 6.13",
			Source:    "seen with CRIU 3.17.1 on 6.18 and 7.3 kernels; checkpoint-restore/criu#2532",
		},
	},
	{
		KernelFrom: Release{6, 16, 0}, CRIUBefore: 40200,
		Issue: CompatIssue{
			ID:          "compat.inet-sockopt-6.16",
			InetSockets: true,
			Summary: "Linux 6.16 moved SO_PASSCRED and SO_PASSSEC to unix and netlink sockets: getsockopt() on an inet socket says EOPNOTSUPP, " +
				"and CRIU before 4.2 fails on every TCP or UDP socket, listening ones included",
			Signature: "sockets: Can't get 1:16 opt: Operation not supported",
			Fix:       "use CRIU 4.2 or later (Debian forky and sid have 4.2.1), or a guest kernel before 6.16",
			Source:    "seen: CRIU 4.1.1 (trixie) on Debian's 7.3 kernel fails on a listening TCP socket, CRIU 4.2.1 (forky) dumps and restores it",
		},
	},
	{
		KernelBefore: Release{5, 13, 0}, CRIUFrom: 31700,
		Issue: CompatIssue{
			ID:        "compat.rseq-5.13",
			Summary:   "kernels before 5.13 lack PTRACE_GET_RSEQ_CONFIGURATION; CRIU 3.17 and later refuse to dump a process that registered rseq (glibc 2.35 and later do at start)",
			Signature: "has rseq but kernel lacks get_rseq_conf feature",
			Fix:       "use a guest kernel 5.13 or later, or run the workload with GLIBC_TUNABLES=glibc.pthread.rseq=0",
			Source:    "checkpoint-restore/criu#1696, #2070",
		},
	},
	{
		KernelFrom: Release{4, 18, 0}, CRIUBefore: 31700,
		Issue: CompatIssue{
			ID:        "compat.rseq-criu-3.17",
			Summary:   "CRIU before 3.17 does not restore rseq registrations; a restored process linked with glibc 2.35 or later can crash",
			Signature: "killed by signal 11: Segmentation fault",
			Fix:       "use CRIU 3.17 or later",
			Source:    "checkpoint-restore/criu#1696 (rseq support landed in CRIU 3.17)",
		},
	},
}

// CompatIssues returns the known incompatibilities between kernelRelease
// and criuVersion (go-criu's GetCriuVersion number, 31701 for 3.17.1). An
// unparsable release or a zero version gives none.
func CompatIssues(kernelRelease string, criuVersion int) []CompatIssue {
	k, err := ParseRelease(kernelRelease)
	if err != nil || criuVersion <= 0 {
		return nil
	}
	var out []CompatIssue
	for _, row := range compatTable {
		if row.KernelFrom != (Release{}) && k.Less(row.KernelFrom) {
			continue
		}
		if row.KernelBefore != (Release{}) && !k.Less(row.KernelBefore) {
			continue
		}
		if row.CRIUFrom > 0 && criuVersion < row.CRIUFrom {
			continue
		}
		if row.CRIUBefore > 0 && criuVersion >= row.CRIUBefore {
			continue
		}
		out = append(out, row.Issue)
	}
	return out
}
