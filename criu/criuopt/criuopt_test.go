package criuopt

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v7/rpc"
)

func TestDumpArgsRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		opts Set
		args []string
	}{
		{"none", Set{}, nil},
		{"flags", Set{LeaveRunning: true, ShellJob: true, FileLocks: true, TCPEstablished: true, ExtUnixSk: true, OrphanPtsMaster: true},
			[]string{"--leave-running", "--shell-job", "--file-locks", "--tcp-established", "--ext-unix-sk", "--orphan-pts-master"}},
		{"externals", Set{ExternalMounts: []Mount{{Path: "/etc/hosts", Key: "hosts"}, {Path: "/etc/resolv.conf", Key: "resolv.conf"}},
			UnixSockets: []uint32{4242}, TTYs: []TTY{{Rdev: 0x8800, Dev: 0x27}}, External: []string{"veth[eth0]:vethX"}},
			[]string{"--external", "mnt[/etc/hosts]:hosts", "--external", "mnt[/etc/resolv.conf]:resolv.conf", "--external", "unix[4242]",
				"--external", "tty[8800:27]", "--external", "veth[eth0]:vethX"}},
		{"skip, cgroups, root", Set{SkipMounts: []string{"/etc/hosts"}, ManageCgroups: CgroupSoft, Root: "/run/c/rootfs"},
			[]string{"--skip-mnt", "/etc/hosts", "--manage-cgroups=soft", "--root", "/run/c/rootfs"}},
		{"not passed, link remap, network lock, ghost limit", Set{Unprivileged: true, LinkRemap: true, NetworkLock: NetworkLockNFTables, GhostLimit: 2 << 20},
			[]string{"--unprivileged", "--link-remap", "--network-lock", "nftables", "--ghost-limit", "2097152"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.opts.DumpArgs()
			if !reflect.DeepEqual(got, tt.args) {
				t.Fatalf("DumpArgs() = %q, want %q", got, tt.args)
			}
			back, err := ParseDump(got)
			if err != nil {
				t.Fatalf("ParseDump(%q): %v", got, err)
			}
			if !reflect.DeepEqual(back, tt.opts) {
				t.Errorf("round trip: %+v, want %+v", back, tt.opts)
			}
		})
	}
}

func TestParseForms(t *testing.T) {
	o, err := ParseDump([]string{"--external=mnt[/etc/hostname]:hostname", "--manage-cgroups", "ignore", "--shell-job",
		"--network-lock", "nftables", "--ghost-limit=1000000", "--external=unix[77]", "--external", "mnt[broken"})
	if err != nil {
		t.Fatal(err)
	}
	want := Set{ExternalMounts: []Mount{{Path: "/etc/hostname", Key: "hostname"}}, ManageCgroups: CgroupIgnore, ShellJob: true,
		NetworkLock: NetworkLockNFTables, GhostLimit: 1000000, UnixSockets: []uint32{77}, External: []string{"mnt[broken"}}
	if !reflect.DeepEqual(o, want) {
		t.Errorf("got %+v, want %+v", o, want)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		op   Op
		args []string
		want string
	}{
		{Dump, []string{"--tree", "1"}, `criu option "--tree": not one kata-cr passes to criu`},
		{Dump, []string{"--external"}, "criu option --external: missing its value"},
		{Dump, []string{"--manage-cgroups=sometimes"}, `--manage-cgroups "sometimes": want one of full, ignore, none, props, soft, strict`},
		{Dump, []string{"--network-lock=carrier-pigeon"}, `--network-lock "carrier-pigeon": want one of iptables, nftables, skip`},
		{Dump, []string{"--ghost-limit", "lots"}, `invalid syntax`},
		{Dump, []string{"--shell-job=yes"}, `criu option "--shell-job=yes": not one kata-cr passes to criu`},
		{Dump, []string{"--restore-sibling"}, `criu option "--restore-sibling": not one kata-cr passes to criu`},
		// The rejected option is named, not the value after it.
		{Dump, []string{"--inherit-fd", "fd[3]:tty"}, `criu option "--inherit-fd": not one kata-cr passes to criu`},
		{Restore, []string{"--inherit-fd", "fd[3]:tty"}, `criu option "--inherit-fd": not one kata-cr passes to criu`},
		{Restore, []string{"--skip-mnt", "/etc/hosts"}, `criu option "--skip-mnt": not one kata-cr passes to criu`},
		{Restore, []string{"--leave-running"}, `criu option "--leave-running": not one kata-cr passes to criu`},
		{Restore, []string{"--ghost-limit", "1"}, `criu option "--ghost-limit": not one kata-cr passes to criu`},
		// A restore takes the dump's network lock from the images.
		{Restore, []string{"--network-lock", "nftables"}, `criu option "--network-lock": not one kata-cr passes to criu`},
		{Restore, []string{"--link-remap"}, `criu option "--link-remap": not one kata-cr passes to criu`},
		{Restore, []string{"--root"}, "criu option --root: missing its value"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.op, tt.args)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parse (op %d) %q = %v, want %q", tt.op, tt.args, err, tt.want)
		}
	}
}

func TestRestoreArgsRoundTrip(t *testing.T) {
	o := Set{
		ShellJob: true, FileLocks: true, TCPEstablished: true, ExtUnixSk: true, RestoreSibling: true,
		ExternalMounts: []Mount{{Key: "hosts", Path: "/run/sandbox/hosts"}},
		External:       []string{"veth[eth0]:vethX"},
		ManageCgroups:  CgroupIgnore,
		Root:           "/run/c/rootfs",
	}
	args := o.RestoreArgs()
	want := []string{"--shell-job", "--file-locks", "--tcp-established", "--ext-unix-sk", "--restore-sibling",
		"--external", "mnt[hosts]:/run/sandbox/hosts", "--external", "veth[eth0]:vethX", "--manage-cgroups=ignore", "--root", "/run/c/rootfs"}
	if !reflect.DeepEqual(args, want) {
		t.Fatalf("RestoreArgs() = %q, want %q", args, want)
	}
	back, err := ParseRestore(args)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, o) {
		t.Errorf("round trip: %+v, want %+v", back, o)
	}
	// The options of the other operation are left out.
	if got := (Set{LeaveRunning: true, GhostLimit: 5, SkipMounts: []string{"/x"}, FileLocks: true, LinkRemap: true, NetworkLock: NetworkLockNFTables}).RestoreArgs(); !slices.Equal(got, []string{"--file-locks"}) {
		t.Errorf("restore args of dump options: %q", got)
	}
	if got := (Set{RestoreSibling: true}).DumpArgs(); got != nil {
		t.Errorf("dump args of --restore-sibling: %q", got)
	}
}

// full sets every field of a Set, so that a field the table lacks shows.
func full() Set {
	return Set{
		LeaveRunning: true, ShellJob: true, FileLocks: true, TCPEstablished: true, ExtUnixSk: true,
		RestoreSibling: true, OrphanPtsMaster: true, Unprivileged: true, LinkRemap: true,
		ExternalMounts: []Mount{{Key: "hosts", Path: "/etc/hosts"}}, UnixSockets: []uint32{7},
		TTYs: []TTY{{Rdev: 0x8801, Dev: 0x27}}, External: []string{"veth[eth0]:vethX"}, SkipMounts: []string{"/x"},
		ManageCgroups: CgroupSoft, Root: "/rootfs", NetworkLock: NetworkLockNFTables, GhostLimit: 1 << 21,
	}
}

// TestTableCoversEveryField: each field of Set, alone, is an option that
// shows in the words of some operation, reads back from them, and that
// Merge, Without and Contains see.
func TestTableCoversEveryField(t *testing.T) {
	all := reflect.ValueOf(full())
	for i := range all.NumField() {
		name := all.Type().Field(i).Name
		var one Set
		reflect.ValueOf(&one).Elem().Field(i).Set(all.Field(i))
		if one.IsZero() {
			t.Errorf("%s: IsZero", name)
		}
		back := Set{}
		for _, op := range []Op{Dump, Restore} {
			if a := one.Args(op); len(a) > 0 {
				p, err := Parse(op, a)
				if err != nil {
					t.Errorf("%s: parse %q: %v", name, a, err)
				}
				back = back.Merge(p)
			}
		}
		if !reflect.DeepEqual(back, one) {
			t.Errorf("%s: words read back as %+v", name, back)
		}
		if !full().Contains(one) || (Set{}).Contains(one) {
			t.Errorf("%s: Contains", name)
		}
		if m := (Set{}).Merge(one); !reflect.DeepEqual(m, one) {
			t.Errorf("%s: Merge into nothing gives %+v", name, m)
		}
		if w := full().Without(one); w.Contains(one) {
			t.Errorf("%s: Without leaves it", name)
		}
		if w := one.Without(one); !w.IsZero() {
			t.Errorf("%s: Without itself leaves %+v", name, w)
		}
	}
}

func TestMergeWithoutContains(t *testing.T) {
	hosts := Set{ExternalMounts: []Mount{{Key: "hosts", Path: "/etc/hosts"}}}
	locks := Set{FileLocks: true}
	ghost := Set{GhostLimit: 2 << 20}
	plan := Set{}.Merge(hosts).Merge(locks).Merge(hosts).Merge(ghost).Merge(Set{GhostLimit: 1 << 20})
	want := Set{ExternalMounts: hosts.ExternalMounts, FileLocks: true, GhostLimit: 2 << 20}
	if !reflect.DeepEqual(plan, want) {
		t.Fatalf("merged %+v, want %+v", plan, want)
	}
	for _, d := range []Set{hosts, locks, ghost, {GhostLimit: 1 << 20}, {}} {
		if !plan.Contains(d) {
			t.Errorf("plan %+v does not contain %+v", plan, d)
		}
	}
	if plan.Contains(Set{GhostLimit: 3 << 20}) || plan.Contains(Set{ShellJob: true}) {
		t.Error("plan contains what it lacks")
	}
	w := plan.Without(hosts)
	if !reflect.DeepEqual(w, Set{FileLocks: true, GhostLimit: 2 << 20}) || w.Equal(plan) {
		t.Errorf("without hosts: %+v", w)
	}
	if len(plan.ExternalMounts) != 1 {
		t.Error("Without changed its receiver")
	}
	if !plan.Without(Set{ShellJob: true}).Equal(plan) {
		t.Error("without an option the plan lacks: not the plan")
	}
	a := Set{External: []string{"a"}}
	b := a.Merge(Set{External: []string{"b"}})
	b.External[0] = "changed"
	if a.External[0] != "a" {
		t.Error("Merge shares its receiver's slices")
	}
}

func TestPassedAndRestoreNeeds(t *testing.T) {
	passed, not := full().Passed()
	if !reflect.DeepEqual(not, Set{Unprivileged: true}) {
		t.Errorf("not passed: %+v", not)
	}
	if !reflect.DeepEqual(passed.Merge(not), full()) || passed.Unprivileged || passed.NetworkLock != NetworkLockNFTables || !passed.LinkRemap {
		t.Errorf("passed: %+v", passed)
	}
	want := Set{ShellJob: true, FileLocks: true, TCPEstablished: true, ExtUnixSk: true}
	if got := full().RestoreNeeds(); !reflect.DeepEqual(got, want) {
		t.Errorf("RestoreNeeds = %+v, want %+v", got, want)
	}
}

func TestRPC(t *testing.T) {
	passed, _ := full().Passed()
	var d rpc.CriuOpts
	if err := passed.RPC(Dump, &d); err != nil {
		t.Fatal(err)
	}
	if !d.GetLeaveRunning() || !d.GetShellJob() || !d.GetFileLocks() || !d.GetTcpEstablished() || !d.GetExtUnixSk() || !d.GetOrphanPtsMaster() || d.GetRstSibling() {
		t.Errorf("dump flags: %v", &d)
	}
	if want := []string{"mnt[/etc/hosts]:hosts", "unix[7]", "tty[8801:27]", "veth[eth0]:vethX"}; !slices.Equal(d.GetExternal(), want) {
		t.Errorf("dump external %q, want %q", d.GetExternal(), want)
	}
	if !slices.Equal(d.GetSkipMnt(), []string{"/x"}) || d.GetRoot() != "/rootfs" || d.GetGhostLimit() != 1<<21 ||
		!d.GetLinkRemap() || d.NetworkLock == nil || d.GetNetworkLock() != rpc.CriuNetworkLockMethod_NFTABLES ||
		!d.GetManageCgroups() || d.GetManageCgroupsMode() != rpc.CriuCgMode_SOFT {
		t.Errorf("dump values: %v", &d)
	}
	var r rpc.CriuOpts
	if err := passed.RPC(Restore, &r); err != nil {
		t.Fatal(err)
	}
	if r.GetLeaveRunning() || !r.GetRstSibling() || r.SkipMnt != nil || r.GhostLimit != nil || r.LinkRemap != nil || r.NetworkLock != nil {
		t.Errorf("restore got dump options: %v", &r)
	}
	if want := []string{"mnt[hosts]:/etc/hosts", "unix[7]", "tty[8801:27]", "veth[eth0]:vethX"}; !slices.Equal(r.GetExternal(), want) {
		t.Errorf("restore external %q, want %q", r.GetExternal(), want)
	}
	if err := (Set{Unprivileged: true}).RPC(Dump, &rpc.CriuOpts{}); err == nil || !strings.Contains(err.Error(), "--unprivileged") {
		t.Errorf("RPC with an option kata-cr does not pass: %v", err)
	}
	if err := (Set{GhostLimit: 1 << 33}).RPC(Dump, &rpc.CriuOpts{}); err == nil {
		t.Error("RPC took a ghost limit over 4 GiB")
	}
}

func TestJSON(t *testing.T) {
	data, err := json.Marshal(full())
	if err != nil {
		t.Fatal(err)
	}
	var back Set
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, full()) {
		t.Errorf("JSON round trip: %s gives %+v", data, back)
	}
	type holder struct {
		S Set `json:"s,omitzero"`
	}
	if data, _ := json.Marshal(holder{}); string(data) != "{}" {
		t.Errorf("an empty set is not omitted: %s", data)
	}
}

func TestTTY(t *testing.T) {
	tty, ok := ParseTTY("tty[8800:27]")
	if !ok || tty != (TTY{Rdev: 0x8800, Dev: 0x27}) || tty.Key() != "tty[8800:27]" {
		t.Errorf("ParseTTY: %+v %v", tty, ok)
	}
	for _, bad := range []string{"tty[8800]", "tty[x:1]", "unix[1]", "tty[1:2"} {
		if _, ok := ParseTTY(bad); ok {
			t.Errorf("ParseTTY(%q) ok", bad)
		}
	}
}
