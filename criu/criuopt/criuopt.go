// Package criuopt holds the CRIU options kata-cr uses as one typed value,
// Set: the checks propose them (a finding's fix carries a Set), the plan
// merges the fixes' sets, the dump and the restore pass them to CRIU over
// RPC, and the checkpoint manifest records them.
//
// One table, options, lists every option with its field of Set, its argv
// form, the operations it belongs to and its field of CRIU's RPC request.
// Args, Parse, Merge, Without, Contains, Passed, RestoreNeeds and RPC all
// read it, so the words shown to people (and given to the criu command
// line), the words read from old data and the RPC request cannot drift
// apart.
//
// It imports nothing of kata-cr, so that reports can hold a Set.
package criuopt

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"google.golang.org/protobuf/proto"
)

// Op is a CRIU operation an option belongs to.
type Op uint8

// The operations.
const (
	Dump Op = 1 << iota
	Restore
)

// Mount is a mount CRIU saves by reference. On dump, Path is the mount
// point inside the dumped mount namespace and the option is
// `--external mnt[Path]:Key`; on restore, Path is the source to mount in
// its place and the option is `--external mnt[Key]:Path`.
type Mount struct {
	Key  string `json:"key"`
	Path string `json:"path"`
}

// TTY is a terminal CRIU saves by reference, `--external tty[RDEV:DEV]`
// (both in hex): on restore --inherit-fd hands CRIU a new terminal under
// the same key.
type TTY struct {
	// Rdev is the pty slave's device number, Dev that of the devpts
	// instance holding it.
	Rdev uint64 `json:"rdev"`
	Dev  uint64 `json:"dev"`
}

// Key is the --external value, also the --inherit-fd key on restore.
func (t TTY) Key() string { return fmt.Sprintf("tty[%x:%x]", t.Rdev, t.Dev) }

// ParseTTY reads a Key.
func ParseTTY(v string) (TTY, bool) {
	in, ok := bracketed(v, "tty[")
	if !ok {
		return TTY{}, false
	}
	a, b, ok := strings.Cut(in, ":")
	if !ok {
		return TTY{}, false
	}
	rdev, err1 := strconv.ParseUint(a, 16, 64)
	dev, err2 := strconv.ParseUint(b, 16, 64)
	if err1 != nil || err2 != nil {
		return TTY{}, false
	}
	return TTY{Rdev: rdev, Dev: dev}, true
}

// CgroupMode is a --manage-cgroups mode.
type CgroupMode string

// The --manage-cgroups modes.
const (
	CgroupIgnore CgroupMode = "ignore"
	CgroupNone   CgroupMode = "none"
	CgroupProps  CgroupMode = "props"
	CgroupSoft   CgroupMode = "soft"
	CgroupFull   CgroupMode = "full"
	CgroupStrict CgroupMode = "strict"
)

var cgroupModes = map[CgroupMode]rpc.CriuCgMode{
	CgroupIgnore: rpc.CriuCgMode_IGNORE,
	CgroupNone:   rpc.CriuCgMode_CG_NONE,
	CgroupProps:  rpc.CriuCgMode_PROPS,
	CgroupSoft:   rpc.CriuCgMode_SOFT,
	CgroupFull:   rpc.CriuCgMode_FULL,
	CgroupStrict: rpc.CriuCgMode_STRICT,
}

// NetworkLock is a --network-lock backend.
type NetworkLock string

// The --network-lock backends.
const (
	NetworkLockIPTables NetworkLock = "iptables"
	NetworkLockNFTables NetworkLock = "nftables"
	NetworkLockSkip     NetworkLock = "skip"
)

var networkLocks = map[NetworkLock]rpc.CriuNetworkLockMethod{
	NetworkLockIPTables: rpc.CriuNetworkLockMethod_IPTABLES,
	NetworkLockNFTables: rpc.CriuNetworkLockMethod_NFTABLES,
	NetworkLockSkip:     rpc.CriuNetworkLockMethod_SKIP,
}

// Set is a set of CRIU options: those of one dump or one restore, or the
// options one fix adds (a delta). The zero Set holds no option. Options of
// the other operation in a Set are left out of Args and RPC.
type Set struct {
	// LeaveRunning (dump) leaves the tree running after the dump.
	LeaveRunning bool `json:"leave_running,omitempty"`
	ShellJob     bool `json:"shell_job,omitempty"`
	FileLocks    bool `json:"file_locks,omitempty"`
	// TCPEstablished dumps and restores established TCP connections.
	TCPEstablished bool `json:"tcp_established,omitempty"`
	ExtUnixSk      bool `json:"ext_unix_sk,omitempty"`
	// RestoreSibling (restore) makes the restored tree's root the
	// caller's child rather than criu swrk's.
	RestoreSibling bool `json:"restore_sibling,omitempty"`
	// OrphanPtsMaster lets CRIU dump a pty whose master is outside the
	// tree, and restore it.
	OrphanPtsMaster bool `json:"orphan_pts_master,omitempty"`
	// Unprivileged is --unprivileged. kata-cr does not pass it (see
	// Passed): it runs CRIU as root.
	Unprivileged bool `json:"unprivileged,omitempty"`
	// LinkRemap (dump) lets CRIU save an open file whose name was removed
	// while it keeps other links, by linking it under a new name next to
	// the old one; the restore opens that link and removes it.
	LinkRemap bool `json:"link_remap,omitempty"`

	// ExternalMounts become `--external mnt[...]` (see Mount).
	ExternalMounts []Mount `json:"external_mounts,omitempty"`
	// UnixSockets become `--external unix[INODE]`.
	UnixSockets []uint32 `json:"unix_sockets,omitempty"`
	// TTYs become `--external tty[RDEV:DEV]`.
	TTYs []TTY `json:"ttys,omitempty"`
	// External holds the other --external values, such as
	// "veth[eth0]:vethX", as CRIU spells them.
	External []string `json:"external,omitempty"`
	// SkipMounts (dump) become --skip-mnt: the mount is left out of the
	// images, and a restore silently lacks it.
	SkipMounts []string `json:"skip_mounts,omitempty"`

	// ManageCgroups is a --manage-cgroups mode; CRIU's default when empty.
	ManageCgroups CgroupMode `json:"manage_cgroups,omitempty"`
	// Root is --root: on dump the root of the dumped mount namespace, on
	// restore the directory that becomes the restored one's root.
	Root string `json:"root,omitempty"`
	// NetworkLock (dump) is --network-lock: how CRIU keeps the dumped TCP
	// connections quiet; CRIU's default (iptables) when empty. A restore
	// takes the method the dump recorded in its images.
	NetworkLock NetworkLock `json:"network_lock,omitempty"`
	// GhostLimit (dump) is --ghost-limit, in bytes: the largest deleted
	// file CRIU copies into the images; CRIU's default (1 MiB) when 0.
	GhostLimit uint64 `json:"ghost_limit,omitempty"`
}

// option is one CRIU option of the table: its name, its operations, and
// what it does on a Set and on an RPC request.
type option struct {
	name string
	ops  Op
	// notPassed marks an option kata-cr knows but does not pass to CRIU:
	// Passed splits it off, and RPC refuses it.
	notPassed bool
	// carried marks a dump option that the restore of its images needs
	// too (RestoreNeeds).
	carried bool
	field
}

// field is the operations of one option on the Set field holding it; the
// generic flagOpt, listOpt and valueOpt build them.
type field struct {
	isZero func(s *Set) bool
	// move moves the option from src to dst, leaving src without it.
	move func(dst, src *Set)
	// args is the option's words in s, for op.
	args func(s *Set, op Op) []string
	// hasValue says whether the option takes a value; parse reads one
	// occurrence (val is "" for a flag), ok false when the value is not
	// this option's (another kind of --external).
	hasValue bool
	parse    func(s *Set, op Op, val string) (ok bool, err error)
	merge    func(dst, d *Set)
	without  func(dst, d *Set)
	contains func(s, d *Set) bool
	// rpc sets the request's field from s; nil for an option kata-cr
	// does not pass.
	rpc func(o *rpc.CriuOpts, s *Set, op Op) error
}

// options is the table, in the order of Args.
var options = []option{
	flagOpt("--leave-running", Dump, false, func(s *Set) *bool { return &s.LeaveRunning }, func(o *rpc.CriuOpts) **bool { return &o.LeaveRunning }),
	flagOpt("--shell-job", Dump|Restore, true, func(s *Set) *bool { return &s.ShellJob }, func(o *rpc.CriuOpts) **bool { return &o.ShellJob }),
	flagOpt("--file-locks", Dump|Restore, true, func(s *Set) *bool { return &s.FileLocks }, func(o *rpc.CriuOpts) **bool { return &o.FileLocks }),
	flagOpt("--tcp-established", Dump|Restore, true, func(s *Set) *bool { return &s.TCPEstablished }, func(o *rpc.CriuOpts) **bool { return &o.TcpEstablished }),
	flagOpt("--ext-unix-sk", Dump|Restore, true, func(s *Set) *bool { return &s.ExtUnixSk }, func(o *rpc.CriuOpts) **bool { return &o.ExtUnixSk }),
	flagOpt("--restore-sibling", Restore, false, func(s *Set) *bool { return &s.RestoreSibling }, func(o *rpc.CriuOpts) **bool { return &o.RstSibling }),
	flagOpt("--orphan-pts-master", Dump|Restore, false, func(s *Set) *bool { return &s.OrphanPtsMaster }, func(o *rpc.CriuOpts) **bool { return &o.OrphanPtsMaster }),
	notPassed(flagOpt("--unprivileged", Dump|Restore, false, func(s *Set) *bool { return &s.Unprivileged }, nil)),
	flagOpt("--link-remap", Dump, false, func(s *Set) *bool { return &s.LinkRemap }, func(o *rpc.CriuOpts) **bool { return &o.LinkRemap }),

	listOpt("--external", Dump|Restore, func(s *Set) *[]Mount { return &s.ExternalMounts }, mountWord, parseMount, rpcExternal),
	listOpt("--external", Dump|Restore, func(s *Set) *[]uint32 { return &s.UnixSockets },
		func(ino uint32, _ Op) string { return "unix[" + strconv.FormatUint(uint64(ino), 10) + "]" }, parseUnix, rpcExternal),
	listOpt("--external", Dump|Restore, func(s *Set) *[]TTY { return &s.TTYs },
		func(t TTY, _ Op) string { return t.Key() }, func(v string, _ Op) (TTY, bool) { return ParseTTY(v) }, rpcExternal),
	// The other --external values, last: they take any value.
	listOpt("--external", Dump|Restore, func(s *Set) *[]string { return &s.External }, verbatim, anyValue, rpcExternal),
	listOpt("--skip-mnt", Dump, func(s *Set) *[]string { return &s.SkipMounts }, verbatim, anyValue,
		func(o *rpc.CriuOpts) *[]string { return &o.SkipMnt }),

	// --manage-cgroups takes an optional value, so it is one word.
	joined(valueOpt("--manage-cgroups", Dump|Restore, func(s *Set) *CgroupMode { return &s.ManageCgroups },
		func(m CgroupMode) string { return string(m) }, parseCgroupMode,
		func(o *rpc.CriuOpts, m CgroupMode) error {
			mode := cgroupModes[m]
			o.ManageCgroups, o.ManageCgroupsMode = proto.Bool(true), &mode
			return nil
		})),
	valueOpt("--root", Dump|Restore, func(s *Set) *string { return &s.Root },
		func(v string) string { return v }, func(v string) (string, error) { return v, nil },
		func(o *rpc.CriuOpts, v string) error { o.Root = proto.String(v); return nil }),
	valueOpt("--network-lock", Dump, func(s *Set) *NetworkLock { return &s.NetworkLock },
		func(n NetworkLock) string { return string(n) }, parseNetworkLock,
		func(o *rpc.CriuOpts, n NetworkLock) error {
			m := networkLocks[n]
			o.NetworkLock = &m
			return nil
		}),
	largestWins(valueOpt("--ghost-limit", Dump, func(s *Set) *uint64 { return &s.GhostLimit },
		func(n uint64) string { return strconv.FormatUint(n, 10) },
		func(v string) (uint64, error) { return strconv.ParseUint(v, 10, 64) },
		func(o *rpc.CriuOpts, n uint64) error {
			if n > math.MaxUint32 {
				return fmt.Errorf("--ghost-limit %d: CRIU takes at most %d over RPC", n, uint64(math.MaxUint32))
			}
			o.GhostLimit = proto.Uint32(uint32(n))
			return nil
		}), func(s *Set) *uint64 { return &s.GhostLimit }),
}

func notPassed(o option) option {
	o.notPassed = true
	o.rpc = nil
	return o
}

// joined makes a valued option one word, "--name=VALUE".
func joined(o option) option {
	args := o.args
	o.args = func(s *Set, op Op) []string {
		if a := args(s, op); len(a) == 2 {
			return []string{a[0] + "=" + a[1]}
		}
		return nil
	}
	return o
}

// largestWins makes a larger value cover a smaller one: merging keeps the
// larger, and a set with a larger value contains a smaller one.
func largestWins(o option, get func(*Set) *uint64) option {
	o.merge = func(dst, d *Set) { *get(dst) = max(*get(dst), *get(d)) }
	o.contains = func(s, d *Set) bool { return *get(s) >= *get(d) }
	return o
}

// flagOpt is a boolean option; carried marks a dump flag that the restore
// needs too; rpcField is the request's field (nil: none).
func flagOpt(name string, ops Op, carried bool, get func(*Set) *bool, rpcField func(*rpc.CriuOpts) **bool) option {
	o := option{name: name, ops: ops, carried: carried, field: field{
		isZero: func(s *Set) bool { return !*get(s) },
		move:   func(dst, src *Set) { *get(dst), *get(src) = *get(src), false },
		args: func(s *Set, _ Op) []string {
			if *get(s) {
				return []string{name}
			}
			return nil
		},
		parse:    func(s *Set, _ Op, _ string) (bool, error) { *get(s) = true; return true, nil },
		merge:    func(dst, d *Set) { *get(dst) = *get(dst) || *get(d) },
		without:  func(dst, d *Set) { *get(dst) = *get(dst) && !*get(d) },
		contains: func(s, d *Set) bool { return *get(s) || !*get(d) },
	}}
	if rpcField != nil {
		o.rpc = func(r *rpc.CriuOpts, s *Set, _ Op) error { *rpcField(r) = proto.Bool(*get(s)); return nil }
	}
	return o
}

// listOpt is a repeated option, "--name VALUE" per element. parse says
// whether a value is of this list (the --external kinds share a name).
func listOpt[T comparable](name string, ops Op, get func(*Set) *[]T, format func(T, Op) string, parse func(string, Op) (T, bool), rpcField func(*rpc.CriuOpts) *[]string) option {
	words := func(s *Set, op Op) []string {
		var out []string
		for _, v := range *get(s) {
			out = append(out, format(v, op))
		}
		return out
	}
	return option{name: name, ops: ops, field: field{
		isZero: func(s *Set) bool { return len(*get(s)) == 0 },
		move:   func(dst, src *Set) { *get(dst), *get(src) = *get(src), nil },
		args: func(s *Set, op Op) []string {
			var a []string
			for _, w := range words(s, op) {
				a = append(a, name, w)
			}
			return a
		},
		hasValue: true,
		parse: func(s *Set, op Op, val string) (bool, error) {
			v, ok := parse(val, op)
			if ok {
				*get(s) = append(*get(s), v)
			}
			return ok, nil
		},
		merge: func(dst, d *Set) {
			for _, v := range *get(d) {
				if !slices.Contains(*get(dst), v) {
					*get(dst) = append(*get(dst), v)
				}
			}
		},
		without: func(dst, d *Set) {
			l := slices.DeleteFunc(slices.Clone(*get(dst)), func(v T) bool { return slices.Contains(*get(d), v) })
			if len(l) == 0 {
				l = nil
			}
			*get(dst) = l
		},
		contains: func(s, d *Set) bool {
			for _, v := range *get(d) {
				if !slices.Contains(*get(s), v) {
					return false
				}
			}
			return true
		},
		rpc: func(r *rpc.CriuOpts, s *Set, op Op) error {
			*rpcField(r) = append(*rpcField(r), words(s, op)...)
			return nil
		},
	}}
}

// valueOpt is a single-valued option, "--name VALUE"; its zero value is
// "not given". Merging keeps the first value given.
func valueOpt[T comparable](name string, ops Op, get func(*Set) *T, format func(T) string, parse func(string) (T, error), rpcSet func(*rpc.CriuOpts, T) error) option {
	var zero T
	o := option{name: name, ops: ops, field: field{
		isZero: func(s *Set) bool { return *get(s) == zero },
		move:   func(dst, src *Set) { *get(dst), *get(src) = *get(src), zero },
		args: func(s *Set, _ Op) []string {
			if v := *get(s); v != zero {
				return []string{name, format(v)}
			}
			return nil
		},
		hasValue: true,
		parse: func(s *Set, _ Op, val string) (bool, error) {
			v, err := parse(val)
			if err != nil {
				return false, err
			}
			*get(s) = v
			return true, nil
		},
		merge: func(dst, d *Set) {
			if *get(dst) == zero {
				*get(dst) = *get(d)
			}
		},
		without: func(dst, d *Set) {
			if *get(dst) == *get(d) {
				*get(dst) = zero
			}
		},
		contains: func(s, d *Set) bool { return *get(d) == zero || *get(s) == *get(d) },
	}}
	if rpcSet != nil {
		o.rpc = func(r *rpc.CriuOpts, s *Set, _ Op) error {
			if v := *get(s); v != zero {
				return rpcSet(r, v)
			}
			return nil
		}
	}
	return o
}

func rpcExternal(o *rpc.CriuOpts) *[]string { return &o.External }

func verbatim(v string, _ Op) string { return v }

func anyValue(v string, _ Op) (string, bool) { return v, true }

// mountWord is a Mount's --external value for op.
func mountWord(m Mount, op Op) string {
	if op == Restore {
		return "mnt[" + m.Key + "]:" + m.Path
	}
	return "mnt[" + m.Path + "]:" + m.Key
}

func parseMount(v string, op Op) (Mount, bool) {
	rest, found := strings.CutPrefix(v, "mnt[")
	if !found {
		return Mount{}, false
	}
	inner, key, ok := strings.Cut(rest, "]:")
	if !ok {
		return Mount{}, false
	}
	if op == Restore {
		return Mount{Key: inner, Path: key}, true
	}
	return Mount{Path: inner, Key: key}, true
}

func parseUnix(v string, _ Op) (uint32, bool) {
	in, ok := bracketed(v, "unix[")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(in, 10, 32)
	return uint32(n), err == nil
}

// bracketed returns what is between prefix ("kind[") and a final "]".
func bracketed(v, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(v, prefix)
	if !ok {
		return "", false
	}
	return strings.CutSuffix(rest, "]")
}

func parseCgroupMode(v string) (CgroupMode, error) {
	if _, ok := cgroupModes[CgroupMode(v)]; ok {
		return CgroupMode(v), nil
	}
	return "", fmt.Errorf("--manage-cgroups %q: want one of %s", v, names(cgroupModes))
}

func parseNetworkLock(v string) (NetworkLock, error) {
	if _, ok := networkLocks[NetworkLock(v)]; ok {
		return NetworkLock(v), nil
	}
	return "", fmt.Errorf("--network-lock %q: want one of %s", v, names(networkLocks))
}

func names[K ~string, V any](m map[K]V) string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, string(k))
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// IsZero reports whether s holds no option.
func (s Set) IsZero() bool {
	for _, o := range options {
		if !o.isZero(&s) {
			return false
		}
	}
	return true
}

// Clone returns a copy of s that shares no slice with it (and holds each
// list element once).
func (s Set) Clone() Set {
	var c Set
	for _, o := range options {
		o.merge(&c, &s)
	}
	return c
}

// Merge returns the union of s and d: every option of either. Lists keep
// s's order with d's new elements after; a single value keeps s's when
// both have one (the ghost limit keeps the larger).
func (s Set) Merge(d Set) Set {
	out := s.Clone()
	for _, o := range options {
		o.merge(&out, &d)
	}
	return out
}

// Without returns s without the options of d: flags d sets are cleared,
// list elements d holds removed, a value equal to d's cleared.
func (s Set) Without(d Set) Set {
	out := s.Clone()
	for _, o := range options {
		o.without(&out, &d)
	}
	return out
}

// Contains reports whether s holds every option of d (a ghost limit at
// least d's).
func (s Set) Contains(d Set) bool {
	for _, o := range options {
		if !o.contains(&s, &d) {
			return false
		}
	}
	return true
}

// Equal reports whether s and d hold the same options.
func (s Set) Equal(d Set) bool { return s.Contains(d) && d.Contains(s) }

// Passed splits s into the options kata-cr passes to CRIU and those it
// does not (--unprivileged).
func (s Set) Passed() (passed, not Set) {
	passed = s.Clone()
	for _, o := range options {
		if o.notPassed {
			o.move(&not, &passed)
		}
	}
	return passed, not
}

// RestoreNeeds returns the options of the dump s that the restore of its
// images needs too (file locks, TCP connections, ...). The root and the
// external mounts are not among them: they depend on the restoring side.
func (s Set) RestoreNeeds() Set {
	var out Set
	c := s.Clone()
	for _, o := range options {
		if o.carried {
			o.move(&out, &c)
		}
	}
	return out
}

// Args returns the options of op as criu command-line words, in the
// table's order: for people, and for the criu command line.
func (s Set) Args(op Op) []string {
	var a []string
	for _, o := range options {
		if o.ops&op != 0 {
			a = append(a, o.args(&s, op)...)
		}
	}
	return a
}

// DumpArgs is Args(Dump).
func (s Set) DumpArgs() []string { return s.Args(Dump) }

// RestoreArgs is Args(Restore).
func (s Set) RestoreArgs() []string { return s.Args(Restore) }

// DumpLine is DumpArgs joined by spaces, for messages and reports.
func (s Set) DumpLine() string { return strings.Join(s.DumpArgs(), " ") }

// RestoreLine is RestoreArgs joined by spaces.
func (s Set) RestoreLine() string { return strings.Join(s.RestoreArgs(), " ") }

// ParseDump reads criu dump command-line words, "--name VALUE" or
// "--name=VALUE", such as old findings and manifests hold. It rejects,
// naming it, an option kata-cr does not know.
func ParseDump(words []string) (Set, error) { return Parse(Dump, words) }

// ParseRestore reads criu restore command-line words. --inherit-fd needs
// an open file and cannot come from words: it is rejected like any option
// kata-cr does not know.
func ParseRestore(words []string) (Set, error) { return Parse(Restore, words) }

// Parse reads the command-line words of op.
func Parse(op Op, words []string) (Set, error) {
	var s Set
	for i := 0; i < len(words); i++ {
		word := words[i]
		name, val, hasVal := strings.Cut(word, "=")
		var cands []option
		for _, o := range options {
			if o.name == name && o.ops&op != 0 {
				cands = append(cands, o)
			}
		}
		if len(cands) == 0 || (hasVal && !cands[0].hasValue) {
			return s, fmt.Errorf("criu option %q: not one kata-cr passes to criu", word)
		}
		if cands[0].hasValue && !hasVal {
			if i+1 >= len(words) {
				return s, fmt.Errorf("criu option %s: missing its value", name)
			}
			i++
			val = words[i]
		}
		for _, o := range cands {
			ok, err := o.parse(&s, op, val)
			if err != nil {
				return s, err
			}
			if ok {
				break
			}
		}
	}
	return s, nil
}

// RPC sets the option fields of the RPC request o from the options of op
// in s. It refuses an option kata-cr does not pass (split them off with
// Passed first).
func (s Set) RPC(op Op, o *rpc.CriuOpts) error {
	for _, opt := range options {
		if opt.ops&op == 0 {
			continue
		}
		if opt.rpc == nil {
			if !opt.isZero(&s) {
				return fmt.Errorf("criu option %s: kata-cr does not pass it to CRIU", opt.name)
			}
			continue
		}
		if err := opt.rpc(o, &s, op); err != nil {
			return err
		}
	}
	return nil
}
