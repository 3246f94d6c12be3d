package criulog

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kata-cr/kata-cr/internal/excerpt"
	"github.com/kata-cr/kata-cr/reports"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func explainFile(t *testing.T, name string) []reports.Explanation {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	es, err := Explain(name, f)
	if err != nil {
		t.Fatalf("explain %s: %v", name, err)
	}
	return es
}

func ids(es []reports.Explanation) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Signature)
	}
	return out
}

// TestFixtures runs the explainer on the real logs in testdata (copied from
// shared/fixtures/criu-logs): each must name its causes and their fixes.
func TestFixtures(t *testing.T) {
	tests := []struct {
		log      string
		want     []string
		line     int      // line of the first explanation
		contains []string // in the first explanation's cause or fix
	}{
		// Real logs of the file and socket scenarios (CRIU 3.17.1 in
		// kata-cr's guest on Debian's 6.1 kernel, the unix one 4.1.1).
		{"dump-tcp-iptables.log", []string{"network-lock-iptables"}, 14, []string{"--network-lock nftables"}},
		{"dump-udp-cork.log", []string{"udp-corked"}, 13, []string{"UDP_CORK"}},
		{"dump-inotify-removed.log", []string{"inotify-no-path"}, 13, []string{"tmpfs"}},
		{"dump-link-remap.log", []string{"link-remap"}, 13, []string{"--link-remap"}},
		{"dump-mptcp.log", []string{"inet-proto-unsupported"}, 13, []string{"GODEBUG=multipathtcp=0"}},
		{"dump-unix-inflight-4.1.1.log", []string{"unix-inflight-data"}, 13, []string{"accept"}},
		{"restore-fifo-missing.log", []string{"fifo-missing", "restore-file-missing"}, 13, []string{"run/kata-cr.fifo"}},
		{"check-host-vdso.log", []string{"vdso-bounds"}, 3, []string{"6.13", "CRIU 4.1"}},
		{"check-lo-nomodules.log", []string{"sock-diag-missing", "tun-missing", "veth-missing", "nftables-missing"}, 1,
			[]string{"unix_diag inet_diag tcp_diag udp_diag af_packet_diag netlink_diag"}},
		{"dump-sl-plain.log", []string{"session-leader-outside-pidns"}, 214,
			[]string{"Process 206 (pid 1 inside the container)", "setsid", "Wrapping a child", "4.1.0"}},
		// kata-cr checkpoint nested-pidns --runtime-setsid --auto-fix, Debian 6.1, CRIU 3.17.1.
		{"dump-nested-pidns.log", []string{"nested-pidns"}, 4, []string{"Process 197", "CLONE_NEWPID", "refuses to restart"}},
		// The first proof of kata-cr checkpoint vfork --runtime-setsid --auto-fix --prove: CRIU's --timeout 5.
		{"dump-vfork.log", []string{"seize-timeout", "unseizable-task"}, 4, []string{"state D", "vfork"}},
		// kata-cr checkpoint tcp-listen --kernel-version 7.3 --criu-suite trixie: CRIU 4.1.1 on 7.3.4.
		{"dump-inet-sockopt.log", []string{"inet-sockopt-6.16"}, 10, []string{"socket option 1:16", "6.16", "CRIU 4.2"}},
		// kata-cr checkpoint io-uring --kernel-version 7.3 --criu-suite trixie: CRIU 4.1.1 on 7.3.
		{"dump-io-uring-4.1.1.log", []string{"send-fds-refused"}, 8, []string{"io_uring", "SCM_RIGHTS"}},
		// kata-cr checkpoint traced --runtime-setsid --auto-fix, Debian 6.1, CRIU 3.17.1: pid 100 is traced by the init.
		{"dump-traced.log", []string{"traced-task"}, 9, []string{"task 100 (state S)", "process.ptrace"}},
		// kata-cr checkpoint nested-userns --runtime-setsid --auto-fix, Debian 6.1, CRIU 3.17.1.
		{"dump-nested-userns.log", []string{"nested-userns"}, 14, []string{"Process 101", "CLONE_NEWUSER"}},
	}
	for _, tt := range tests {
		t.Run(tt.log, func(t *testing.T) {
			es := explainFile(t, tt.log)
			if got := strings.Join(ids(es), " "); got != strings.Join(tt.want, " ") {
				t.Fatalf("signatures = %q, want %q", got, strings.Join(tt.want, " "))
			}
			for _, e := range es {
				if !e.Known || e.Cause == "" || e.Fix == "" || len(e.Quote) == 0 {
					t.Errorf("%s: explanation lacks cause, fix or quote: %+v", e.Signature, e)
				}
			}
			if es[0].Line != tt.line {
				t.Errorf("line = %d, want %d", es[0].Line, tt.line)
			}
			text := es[0].Cause + " " + es[0].Fix
			for _, c := range tt.contains {
				if !strings.Contains(text, c) {
					t.Errorf("explanation does not say %q: %s", c, text)
				}
			}
		})
	}
}

// signatureCases holds one real-looking line per signature. Every signature
// must have a case (TestEverySignatureTested).
var signatureCases = []struct {
	line     string
	want     string
	contains string // in cause or fix, proving the groups were filled in
}{
	{"Error (criu/cr-dump.c:1618): A session leader of 206(1) is outside of its pid namespace", "session-leader-outside-pidns", "Process 206 (pid 1"},
	{"Error (criu/cr-dump.c:1350): A session leader of zombie process 17(3) is outside of its pid namespace", "session-leader-outside-pidns", "Process 17"},
	{"Error (criu/cr-restore.c:2146): The root process 42 is not a session leader. Consider using --shell-job option", "not-session-leader-on-restore", "--shell-job"},
	{"Error (criu/namespaces.c:1071): Can't dump a pid namespace without the process init", "pidns-without-init", "pid 1"},
	{"Error (criu/namespaces.c:463): Can't dump nested pid namespace for 197", "nested-pidns", "Process 197 lives in a pid namespace of its own"},
	{"Error (criu/namespaces.c:463): Can't dump nested user namespace for 101", "nested-userns", "Process 101 lives in a user namespace of its own"},
	{"Error (criu/cr-dump.c:1739): Timeout reached. Try to interrupt: 0", "seize-timeout", "vfork"},
	{"Error (compel/src/lib/infect.c:234): Unseizable non-zombie 211 found, state D, err -1/4", "unseizable-task", "task 211"},
	{"pie: 1: Error (criu/pie/parasite.c:588): send_fds failed (-22)", "send-fds-refused", "io_uring"},
	{"Error (compel/src/lib/infect.c:234): Unseizable non-zombie 112 found, state S, err -1/10", "traced-task", "task 112 (state S)"},
	{"Error (criu/sockets.c:540): sockets: Can't get 1:16 opt: Operation not supported", "inet-sockopt-6.16", "socket option 1:16"},
	{"Error (criu/cr-check.c:1487): Unable to fsopen overlayfs: No such device", "overlayfs-missing", "modprobe overlay"},
	{"Error (criu/cr-check.c:1166): failed to mount autofs: No such device", "autofs-missing", "modprobe autofs4"},
	{"Error (criu/sockets.c:209): sockets: Diag module missing (-2)", "sock-diag-missing", "netlink_diag"},
	{"Error: Could not process rule: Operation not supported", "nftables-missing", "nf_tables"},
	{"create table inet CRIU", "nftables-missing", "nf_tables"},
	{"mnl.c:60: Unable to initialize Netlink socket: Protocol not supported", "nftables-missing", "nf_tables"},
	{"Error (criu/kerndat.c:1666): kerndat_has_nftables_concat failed when initializing kerndat.", "nftables-missing", "nf_tables"},
	{"Error (criu/netfilter.c:260): Can't create nftables table", "nftables-missing", "CRIU 4.1"},
	{"Error (criu/kerndat.c:520): Unable to connect a socket: Network is unreachable", "loopback-down", "ip link set lo up"},
	{"Error (criu/kerndat.c:1612): kerndat_tcp_repair failed when initializing kerndat.", "loopback-down", "ip link set lo up"},
	{"Error (criu/tty.c:2432): Can't open /dev/ptmx: No such file or directory", "devpts-missing", "mount -t devpts"},
	{"Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds", "vdso-bounds", "CRIU 4.1"},
	{"Error (criu/kerndat.c:1615): kerndat_vdso_fill_symtable failed when initializing kerndat.", "vdso-bounds", "6.13"},
	{"Error (criu/files-reg.c:1800): Can't lookup mount=24 for fd=0 path=/dev/null", "stdio-outside-container", "fd 0 still points at the guest's /dev/null"},
	{"Error (criu/files-reg.c:1800): Can't lookup mount=1 for fd=-3 path=/bin/busybox", "initramfs-root", "/bin/busybox lies on the initramfs root"},
	{"Error (criu/files-reg.c:1800): Can't lookup mount=37 for fd=5 path=/etc/hosts", "mount-lookup", "--external mnt[MOUNTPOINT]:KEY"},
	{"Error (criu/files-reg.c:1800): Can't lookup mount=24 for fd=7 path=/dev/null", "mount-lookup", "/dev/null (fd 7) on mount 24"},
	{"Error (criu/mount.c:1117): mnt: 37:./etc/resolv.conf doesn't have a proper root mount", "mount-no-root", "--external mnt[/etc/resolv.conf]:KEY"},
	{"Error (criu/sk-unix.c:888): unix: Can't dump half of stream unix connection.", "unix-stream-external", "--inherit-fd"},
	{"Error (criu/sk-unix.c:870): unix: External socket is used. Consider using --ext-unix-sk option.", "unix-external", "--ext-unix-sk"},
	{"Error (criu/sk-inet.c:186): inet: Connected TCP socket, consider using --tcp-established option.", "tcp-established", "--tcp-established"},
	{"Error (criu/sk-inet.c:250): inet: In-flight connection (l) for 5", "tcp-in-flight", "--skip-in-flight"},
	{"Error (criu/mount.c:1450): mnt: FS mnt ./data dev 0x2a root / unsupported id 33", "unsupported-fs", "--external mnt[/data]:KEY"},
	{"Error (criu/filesystems.c:100): /mnt/fuse is a fuse mount but not external", "fuse-not-external", "mnt[/mnt/fuse]:KEY"},
	{"pie: 1: Error (criu/pie/parasite.c:240): membarrier(1 << 3) returned -38", "membarrier", "CONFIG_MEMBARRIER"},
	{"Error (criu/file-lock.c:150): Some file locks are hold by dumping tasks! You can try --file-locks to dump them.", "file-locks", "--file-locks"},
	{"Error (criu/tun.c:85): tun: Unable to create tun: No such file or directory", "tun-missing", "modprobe tun"},
	{"Error (criu/net.c:3741): Unable to create a veth pair: -95", "veth-missing", "modprobe veth"},
	{"Error (criu/mount.c:2010): Can't dump tmpfs content", "tmpfs-tar", "GNU tar"},
	{"Error (criu/files-reg.c:900): Can't dump ghost file /tmp/x of 1048577 size, increase limit", "ghost-limit", "/tmp/x (1048577 bytes)"},
	{"Error (criu/netfilter.c:105): Iptables configuration failed", "network-lock-iptables", "--network-lock nftables"},
	{"Error (criu/sk-tcp.c:77): tcp: Failed to lock TCP connection 26c9", "network-lock-iptables", "iptables"},
	{"Error (criu/sk-inet.c:128): inet: Unsupported proto 262 for socket 26d5", "inet-proto-unsupported", "GODEBUG=multipathtcp=0"},
	{"Error (criu/sk-inet.c:474): inet: Can't dump corked dgram socket 1a2b", "udp-corked", "inode 0x1a2b"},
	{"Error (criu/files.c:465): Can't dump file 10 of that type [600] (anon anon_inode:[pidfd])", "file-type-unsupported", "fd 10 (anon anon_inode:[pidfd])"},
	{"Error (criu/files-reg.c:1042): Can't create link remap for /run/kata-cr-watched. Use link-remap option.", "link-remap", "holds /run/kata-cr-watched open"},
	{"Error (criu/fsnotify.c:263): fsnotify: Can't find suitable path for handle (dev 0x24 ino 0x1a7): -2", "inotify-no-path", "inode 0x1a7 of device 0x24"},
	{"Error (criu/sk-unix.c:506): unix: Non-empty write queue on an in-flight socket 0x5e1f", "unix-inflight-data", "accept"},
	{"Error (criu/sk-unix.c:525): unix: Found a closed in-flight socket to 0x5e1e", "unix-inflight-data", "3.18"},
	{"Error (criu/files-reg.c:2185): Can't open file run/kata-cr.fifo: No such file or directory", "restore-file-missing", "the file run/kata-cr.fifo"},
	{"Error (criu/files-reg.c:2259): Can't open file var/lib/app/data on restore: No such file or directory", "restore-file-missing", "create var/lib/app/data"},
	{"Error (criu/fifo.c:98): Can't open fake fifo 0xd [/run/kata-cr.fifo]: No such file or directory", "fifo-missing", "the FIFO /run/kata-cr.fifo"},
	{"Error (criu/mount.c:1111): mnt: Mount 40 ./sys (master_id: 7 shared_id: 0) has unreachable sharing. Try --enable-external-masters.", "external-masters", "--enable-external-masters"},
	{"Error (criu/mount.c:3000): mnt: The --root option is required to restore a mount namespace", "restore-needs-root", "--root ROOTFS"},
	{"Error (criu/proc_parse.c:1000): can't dump unprivileged task whose /proc doesn't belong to it", "unprivileged", "root"},
	{"Error (criu/image.c:400): Unable to write image: No space left on device", "no-space", "Free space"},
	{"Error (criu/cr-check.c:400): System call kcmp is not supported: Function not implemented", "checkpoint-restore-missing", "CONFIG_CHECKPOINT_RESTORE=y"},
	{"Error (criu/cr-check.c:300): prctl: PR_SET_MM_MAP_SIZE is not supported: Invalid argument", "checkpoint-restore-missing", "CONFIG_CHECKPOINT_RESTORE=y"},
	{"Error (criu/pid.c:100): Can't open 1/sys/kernel/ns_last_pid on procfs: No such file or directory", "checkpoint-restore-missing", "CONFIG_CHECKPOINT_RESTORE=y"},
	{"Error (criu/cr-check.c:1037): UFFD is not supported", "uffd-missing", "CONFIG_USERFAULTFD"},
	{"Error (criu/cr-check.c:1038): Non-cooperative UFFD is not supported", "uffd-missing", "lazy"},
	{"Error (criu/cr-check.c:1200): Time namespaces are not supported", "time-ns-missing", "CONFIG_TIME_NS"},
	{"Error (criu/net.c:3000): Locking network failed: iptables-restore returned 2. This may be connected to disabled CONFIG_NETFILTER_XT_MARK kernel build config option.", "iptables-lock", "--network-lock nftables"},
	{"Error (criu/arch/x86/cpu.c:300): cpu: FPU feature required by image is not supported on host (fpu:1 fxsr:1 osxsave:0 xsaves:0)", "cpu-mismatch", "--cpu-cap=none"},
}

// prefixes are the shapes a CRIU log line comes in: plain (criu check on a
// terminal), with the timestamp (-o/--log-file), and with the pid that
// restore logs and --log-pid add.
var prefixes = []string{"", "(00.295595) ", "(12.000001)      1: ", "(00.100000) 4242: "}

func TestSignatures(t *testing.T) {
	for _, tt := range signatureCases {
		ps := prefixes
		if !strings.Contains(tt.line, "Error") {
			// Lines that libraries print themselves never carry CRIU's prefixes.
			ps = []string{""}
		}
		for _, p := range ps {
			line := p + tt.line
			t.Run(line, func(t *testing.T) {
				es := ExplainLines("test.log", []string{"(00.000001) some context", line})
				if len(es) != 1 {
					t.Fatalf("got %d explanations %v, want 1 (%s)", len(es), ids(es), tt.want)
				}
				e := es[0]
				if e.Signature != tt.want || !e.Known {
					t.Fatalf("signature = %s (known %v), want %s", e.Signature, e.Known, tt.want)
				}
				text := e.Cause + " " + e.Fix
				if !strings.Contains(text, tt.contains) {
					t.Errorf("explanation does not say %q: %s", tt.contains, text)
				}
				if strings.Contains(text, "${") {
					t.Errorf("unexpanded placeholder: %s", text)
				}
				if e.Line != 2 || len(e.Quote) != 2 || e.Quote[1] != line {
					t.Errorf("line %d, quote %q: want line 2 quoted after its context", e.Line, e.Quote)
				}
			})
		}
	}
}

func TestEverySignatureTested(t *testing.T) {
	tested := map[string]bool{}
	for _, c := range signatureCases {
		tested[c.want] = true
	}
	for _, s := range Signatures {
		if s.FollowOn {
			continue
		}
		if !tested[s.ID] {
			t.Errorf("signature %s has no case in signatureCases", s.ID)
		}
		if s.Cause == "" || s.Fix == "" {
			t.Errorf("signature %s lacks a cause or a fix", s.ID)
		}
	}
	seen := map[string]bool{}
	for _, s := range Signatures {
		if seen[s.ID] {
			t.Errorf("signature ID %s appears twice", s.ID)
		}
		seen[s.ID] = true
	}
}

func TestExplainLines(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		want  []string // signatures in order
		known []bool
	}{
		{"empty", nil, nil, nil},
		{"success", []string{"(00.000100) Dumping finished successfully", "Looks good."}, nil, nil},
		{"warnings are not failures",
			[]string{"Warn  (criu/kerndat.c:1538): Can't create nftables table", "Warn  (criu/net.c:3767): NSID isn't reported for network links"},
			nil, nil},
		{"follow-on lines hide behind their cause",
			[]string{"Error (criu/util.c:642): exited, status=1", "Error (criu/sockets.c:209): sockets: Diag module missing (-2)",
				"Error (criu/kerndat.c:1666): kerndat_socket_netns failed when initializing kerndat.",
				"Error (criu/crtools.c:260): Could not initialize kernel features detection.",
				"Error (criu/cr-dump.c:2053): Dumping FAILED."},
			[]string{"sock-diag-missing"}, []bool{true}},
		{"a follow-on line alone says CRIU failed without a cause",
			[]string{"(00.1) Dumping processes", "(00.2) Error (criu/cr-dump.c:2053): Dumping FAILED."},
			[]string{"failed"}, []bool{false}},
		{"unknown errors are quoted as unknown",
			[]string{"(00.1) Error (criu/new.c:1): a brand new failure", "(00.2) Error (criu/cr-dump.c:2053): Dumping FAILED."},
			[]string{UnknownSignature}, []bool{false}},
		{"repeats are explained once",
			[]string{"Error (criu/sockets.c:209): sockets: Diag module missing (-2)", "Error (criu/sockets.c:209): sockets: Diag module missing (-2)",
				"Error (x.c:1): odd", "Error (x.c:1): odd", "Error (x.c:2): other"},
			[]string{"sock-diag-missing", UnknownSignature, UnknownSignature}, []bool{true, false, false}},
		{"dump steps that failed are follow-ons",
			[]string{"(00.1) Error (criu/files-reg.c:1710): Can't lookup mount=37 for fd=5 path=/etc/hosts",
				"(00.2) Error (criu/cr-dump.c:1476): Dump files (pid: 206) failed with -1",
				"(00.3) Error (criu/cr-dump.c:1803): Dumping FAILED."},
			[]string{"mount-lookup"}, []bool{true}},
		{"CRIU's own info lines about nftables are not errors",
			[]string{"(00.126906) Lock network", "(00.127000) \tRunning nftables [create table inet CRIU-206]"},
			nil, nil},
		{"carriage returns", []string{"(00.1) Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds\r"},
			[]string{"vdso-bounds"}, []bool{true}},
		{"lines quoted by runc's logCriuErrors",
			[]string{`time="2026-04-01T21:18:58Z" level=warning msg="723:(00.016761) Error (criu/cr-dump.c:1618): A session leader of 9(1) is outside of its pid namespace"`},
			[]string{"session-leader-outside-pidns"}, []bool{true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			es := ExplainLines("x.log", tt.lines)
			if got, want := strings.Join(ids(es), " "), strings.Join(tt.want, " "); got != want {
				t.Fatalf("signatures = %q, want %q", got, want)
			}
			for i, e := range es {
				if e.Known != tt.known[i] {
					t.Errorf("%s: known = %v, want %v", e.Signature, e.Known, tt.known[i])
				}
				if e.Cause == "" || len(e.Quote) == 0 {
					t.Errorf("%s: no cause or quote", e.Signature)
				}
			}
		})
	}
}

func TestQuoteContext(t *testing.T) {
	lines := []string{"a", "b", "c", "d", "e", "f", "Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds"}
	es := ExplainLines("x.log", lines)
	if len(es) != 1 {
		t.Fatalf("got %d explanations", len(es))
	}
	want := []string{"c", "d", "e", "f", lines[6]}
	if strings.Join(es[0].Quote, "|") != strings.Join(want, "|") || es[0].Line != 7 {
		t.Errorf("line %d quote %q, want line 7 quote %q", es[0].Line, es[0].Quote, want)
	}
	long := "Error (x.c:1): " + strings.Repeat("é", 1000)
	es = ExplainLines("x.log", []string{long})
	if q := es[0].Quote[0]; len(q) > maxQuoteLen+3 || !strings.HasSuffix(q, "...") {
		t.Errorf("a long line is quoted whole (%d bytes)", len(q))
	}
}

func TestUnknownCap(t *testing.T) {
	var lines []string
	for i := range maxUnknown + 5 {
		lines = append(lines, fmt.Sprintf("Error (x.c:%d): odd thing %d", i, i))
	}
	es := ExplainLines("x.log", lines)
	if len(es) != maxUnknown {
		t.Fatalf("%d explanations, want the cap %d", len(es), maxUnknown)
	}
	if !strings.Contains(es[len(es)-1].Cause, "5 more distinct unknown error lines") {
		t.Errorf("the last unknown explanation does not say how many were left out: %s", es[len(es)-1].Cause)
	}
}

func TestExplainBadInput(t *testing.T) {
	if _, err := Explain("bin", strings.NewReader("ELF\x00\x01\x02")); !errors.Is(err, ErrNotText) {
		t.Errorf("binary input: err = %v, want ErrNotText", err)
	}
	es, err := Explain("empty", strings.NewReader(""))
	if err != nil || len(es) != 0 {
		t.Errorf("empty input: %v, %v; want nothing", es, err)
	}
	if _, err := Explain("broken", errReader{}); err == nil || !strings.Contains(err.Error(), "read broken") {
		t.Errorf("read error: err = %v, want it wrapped with the source", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("input/output error") }

// TestGolden pins the full explanations of the real logs.
func TestGolden(t *testing.T) {
	logs, err := filepath.Glob(filepath.Join("testdata", "*.log"))
	if err != nil || len(logs) == 0 {
		t.Fatalf("no logs in testdata: %v", err)
	}
	all := map[string][]reports.Explanation{}
	for _, l := range logs {
		all[filepath.Base(l)] = explainFile(t, filepath.Base(l))
	}
	got, err := json.MarshalIndent(all, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "explanations.golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test ./criulog -update to create it): %v", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs (run go test ./criulog -update if the change is intended)\n--- got\n%s", path, got)
	}
}

func FuzzExplain(f *testing.F) {
	logs, _ := filepath.Glob(filepath.Join("testdata", "*.log"))
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, c := range signatureCases {
		f.Add([]byte("(00.1) x\n(00.2) " + c.line + "\n(00.3) Error (criu/cr-dump.c:2053): Dumping FAILED.\n"))
	}
	f.Add([]byte("Error (\nError ()): \n(00.1)      : Error (:): \r\n\xff\xfe"))
	f.Fuzz(func(t *testing.T, data []byte) {
		es, err := Explain("fuzz.log", strings.NewReader(string(data)))
		if err != nil {
			if !errors.Is(err, ErrNotText) {
				t.Fatalf("unexpected error: %v", err)
			}
			return
		}
		lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
		for _, e := range es {
			if e.Line < 1 || e.Line > len(lines) {
				t.Fatalf("line %d outside the log's %d lines", e.Line, len(lines))
			}
			if len(e.Quote) == 0 || len(e.Quote) > contextLines+1 || e.Cause == "" || e.Signature == "" {
				t.Fatalf("incomplete explanation %+v", e)
			}
			if last := e.Quote[len(e.Quote)-1]; last != excerpt.Clip(strings.TrimRight(lines[e.Line-1], "\r\n\t "), maxQuoteLen) {
				t.Fatalf("quote ends with %q, not line %d", last, e.Line)
			}
		}
	})
}

// BenchmarkExplain measures the explainer on the real dump log.
func BenchmarkExplain(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("testdata", "dump-sl-plain.log"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Explain("dump.log", strings.NewReader(string(data))); err != nil {
			b.Fatal(err)
		}
	}
}
