package checks

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/criu/criuopt"
)

func TestProcParseMountInfo(t *testing.T) {
	in := `200 150 0:60 / / rw,relatime - overlay overlay rw,lowerdir=/l
205 200 0:70 /hosts /etc/hosts rw shared:5 master:2 - tmpfs tmpfs rw
208 200 0:71 /a\040b\011c /data\040dir\134x rw - virtiofs kata\040Shared rw
209 200 0:72 / /no-super rw - 9p mnt
`
	got, err := procParseMountInfo([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []procMount{
		{ID: 200, ParentID: 150, MajMin: "0:60", Root: "/", MountPoint: "/", Options: "rw,relatime", Optional: []string{}, FSType: "overlay", Source: "overlay", SuperOpts: "rw,lowerdir=/l"},
		{ID: 205, ParentID: 200, MajMin: "0:70", Root: "/hosts", MountPoint: "/etc/hosts", Options: "rw", Optional: []string{"shared:5", "master:2"}, FSType: "tmpfs", Source: "tmpfs", SuperOpts: "rw"},
		{ID: 208, ParentID: 200, MajMin: "0:71", Root: "/a b\tc", MountPoint: `/data dir\x`, Options: "rw", Optional: []string{}, FSType: "virtiofs", Source: "kata Shared", SuperOpts: "rw"},
		{ID: 209, ParentID: 200, MajMin: "0:72", Root: "/", MountPoint: "/no-super", Options: "rw", Optional: []string{}, FSType: "9p", Source: "mnt"},
	}
	for i := range got {
		got[i].Line = ""
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	for _, bad := range []string{
		"200 150 0:60 / / rw - overlay\n",
		"x 150 0:60 / / rw - overlay overlay rw\n",
		"200 150 060 / / rw - overlay overlay rw\n",
		"200 150 0:60 / / rw shared:1 overlay overlay rw\n",
	} {
		if _, err := procParseMountInfo([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestProcUnescape(t *testing.T) {
	for in, want := range map[string]string{
		`/plain`:         "/plain",
		`/a\040b`:        "/a b",
		`/nl\012`:        "/nl\n",
		`/back\134slash`: `/back\slash`,
		`/short\04`:      `/short\04`,
		`/trail\`:        `/trail\`,
		`/bad\999`:       `/bad\999`,
	} {
		if got := procUnescape(in); got != want {
			t.Errorf("procUnescape(%q) = %q, want %q", in, got, want)
		}
		if want != `/short\04` && want != `/trail\` && want != `/bad\999` && procUnescape(procEscape(want)) != want {
			t.Errorf("escape round trip of %q", want)
		}
	}
}

func procLittleEndian() bool {
	b := make([]byte, 2)
	binary.NativeEndian.PutUint16(b, 1)
	return b[0] == 1
}

func TestProcParseTCP(t *testing.T) {
	if !procLittleEndian() {
		t.Skip("the table lines were written by a little-endian kernel; a big-endian one prints the words differently")
	}
	in := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		"   0: 0100007F:1F90 0100007F:A1B2 01 00000000:00000000 00:00000000 00000000     0        0 8001 1 0000000000000000 20 4 30 10 -1\n" +
		"   1: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 8002 1 0000000000000000 100 0 0 10 0\n" +
		"   2: 00000000000000000000000001000000:1F90 0000000000000000FFFF00000100007F:C350 08 00000000:00000000 00:00000000 00000000 0 0 8003 1 0\n"
	got, err := procParseTCP([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []procTCPConn{
		{Local: netip.MustParseAddrPort("127.0.0.1:8080"), Remote: netip.MustParseAddrPort("127.0.0.1:41394"), State: 1, Inode: 8001},
		{Local: netip.MustParseAddrPort("0.0.0.0:80"), Remote: netip.MustParseAddrPort("0.0.0.0:0"), State: 10, Inode: 8002},
		{Local: netip.MustParseAddrPort("[::1]:8080"), Remote: netip.MustParseAddrPort("127.0.0.1:50000"), State: 8, Inode: 8003},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
	for _, bad := range []string{"hdr\n 0: 0100007F:1F90 0100007F:A1B2 01\n", "hdr\n 0: 0100007F 0100007F:A1B2 01 0 0 0 0 0 0 1\n", "hdr\n 0: 0100007F:1F90 0100007F:A1B2 zz 0 0 0 0 0 0 1\n"} {
		if _, err := procParseTCP([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestProcParseNetUnix(t *testing.T) {
	in := "Num       RefCount Protocol Flags    Type St Inode Path\n" +
		"0000000007734646: 00000003 00000000 00000000 0001 03  7001\n" +
		"0000000007734647: 00000002 00000000 00010000 0002 01  7002 /run/my app.sock\n" +
		"0000000007734648: 00000002 00000000 00010000 0005 0A  7003 @abstract\n"
	got, err := procParseNetUnix([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []procUnixEntry{
		{Inode: 7001, Type: 1, State: 3},
		{Inode: 7002, Type: 2, State: 1, Path: "/run/my app.sock"},
		{Inode: 7003, Type: 5, State: 10, Path: "@abstract"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if _, err := procParseNetUnix([]byte("hdr\n0000: 00000003 00000000\n")); err == nil {
		t.Error("short line: no error")
	}
}

// procNlMsg builds one netlink message for the unix_diag parser tests.
func procNlMsg(typ uint16, payload []byte) []byte {
	ne := binary.NativeEndian
	l := unix.NLMSG_HDRLEN + len(payload)
	b := make([]byte, (l+3)&^3)
	ne.PutUint32(b[0:], uint32(l))
	ne.PutUint16(b[4:], typ)
	copy(b[unix.NLMSG_HDRLEN:], payload)
	return b
}

func procDiagMsg(typ, state uint8, ino, peer uint32, name string) []byte {
	ne := binary.NativeEndian
	m := make([]byte, procSizeofUnixDiagMsg)
	m[0], m[1], m[2] = unix.AF_UNIX, typ, state
	ne.PutUint32(m[4:], ino)
	attr := func(t uint16, data []byte) []byte {
		l := 4 + len(data)
		a := make([]byte, (l+3)&^3)
		ne.PutUint16(a[0:], uint16(l))
		ne.PutUint16(a[2:], t)
		copy(a[4:], data)
		return a
	}
	if name != "" {
		m = append(m, attr(procUnixDiagName, []byte(name))...)
	}
	if peer != 0 {
		p := make([]byte, 4)
		ne.PutUint32(p, peer)
		m = append(m, attr(procUnixDiagPeer, p)...)
	}
	return procNlMsg(unix.SOCK_DIAG_BY_FAMILY, m)
}

func TestProcParseUnixDiag(t *testing.T) {
	var buf []byte
	buf = append(buf, procDiagMsg(unix.SOCK_STREAM, 1, 100, 101, "")...)
	buf = append(buf, procDiagMsg(unix.SOCK_STREAM, 10, 102, 0, "/run/x.sock\x00")...)
	buf = append(buf, procDiagMsg(unix.SOCK_DGRAM, 7, 103, 0, "\x00abstract")...)
	out := map[uint32]procUnixSock{}
	done, err := procParseUnixDiag(buf, out)
	if err != nil || done {
		t.Fatalf("done %v err %v", done, err)
	}
	want := map[uint32]procUnixSock{
		100: {Inode: 100, Type: unix.SOCK_STREAM, State: 1, Peer: 101},
		102: {Inode: 102, Type: unix.SOCK_STREAM, State: 10, Name: "/run/x.sock"},
		103: {Inode: 103, Type: unix.SOCK_DGRAM, State: 7, Name: "@abstract"},
	}
	if !reflect.DeepEqual(out, want) {
		t.Errorf("got  %+v\nwant %+v", out, want)
	}
	if done, err := procParseUnixDiag(procNlMsg(unix.NLMSG_DONE, make([]byte, 4)), out); !done || err != nil {
		t.Errorf("NLMSG_DONE: done %v err %v", done, err)
	}
	enoent := make([]byte, 4)
	errno := -int32(unix.ENOENT)
	binary.NativeEndian.PutUint32(enoent, uint32(errno))
	if _, err := procParseUnixDiag(procNlMsg(unix.NLMSG_ERROR, enoent), out); !errors.Is(err, errNoUnixDiag) {
		t.Errorf("ENOENT: %v", err)
	}
	if _, err := procParseUnixDiag([]byte{200, 0, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, out); err == nil {
		t.Error("bad length: no error")
	}
}

func TestProcJudgeUnix(t *testing.T) {
	socks := map[uint32]procUnixSock{
		1: {Inode: 1, Type: unix.SOCK_STREAM, State: 1, Peer: 2},
		2: {Inode: 2, Type: unix.SOCK_STREAM, State: 1, Peer: 1},
		3: {Inode: 3, Type: unix.SOCK_STREAM, State: 1, Peer: 9},
		4: {Inode: 4, Type: unix.SOCK_STREAM, State: 10},
		5: {Inode: 5, Type: unix.SOCK_DGRAM, State: 1, Peer: 10},
		9: {Inode: 9, Type: unix.SOCK_STREAM, State: 1, Peer: 3, Name: "/run/peer.sock"},
	}
	tests := []struct {
		name         string
		held         []uint64
		wantExt      []uint32
		wantUnknown  []uint64
		wantInternal int
	}{
		{name: "pair inside", held: []uint64{1, 2}, wantInternal: 2},
		{name: "half of a pair", held: []uint64{1}, wantExt: []uint32{1}},
		{name: "listener and outside peers", held: []uint64{3, 4, 5}, wantExt: []uint32{3, 5}, wantInternal: 1},
		{name: "not listed", held: []uint64{42}, wantUnknown: []uint64{42}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			held := map[uint64][]string{}
			for _, h := range tc.held {
				held[h] = []string{"pid 1 (x) fd 3"}
			}
			ext, unknown, internal := procJudgeUnix(held, socks)
			var gotExt []uint32
			for _, e := range ext {
				gotExt = append(gotExt, e.Sock.Inode)
			}
			if !reflect.DeepEqual(gotExt, tc.wantExt) || !reflect.DeepEqual(unknown, tc.wantUnknown) || internal != tc.wantInternal {
				t.Errorf("ext %v unknown %v internal %d; want %v %v %d", gotExt, unknown, internal, tc.wantExt, tc.wantUnknown, tc.wantInternal)
			}
			for _, e := range ext {
				if e.Sock.Inode == 3 && e.PeerSk.Name != "/run/peer.sock" {
					t.Errorf("peer of 3: %+v", e.PeerSk)
				}
			}
		})
	}
}

func TestProcTTYKind(t *testing.T) {
	tests := []struct {
		path   string
		kind   string
		ttyNr  int
		index  int
		hasDev bool
	}{
		{path: "/dev/pts/3", kind: procTTYSlave, ttyNr: 34819, index: 3, hasDev: true},
		{path: "/dev/pts/300", kind: procTTYSlave, ttyNr: (44 & 0xff) | 137<<8, index: 300, hasDev: true},
		{path: "/dev/ptmx", kind: procTTYMaster, hasDev: true},
		{path: "/dev/pts/ptmx", kind: procTTYMaster, hasDev: true},
		{path: "/dev/console", kind: procTTYConsole, hasDev: true},
		{path: "/dev/tty", kind: procTTYCtty, hasDev: true},
		{path: "/dev/tty2", kind: procTTYVT, hasDev: true},
		{path: "/dev/ttyS0", kind: procTTYNone, hasDev: true},
		{path: "/dev/hvc0", kind: procTTYNone, hasDev: true},
		{path: "/dev/null", kind: procTTYNone, hasDev: true},
		{path: "/home/x", hasDev: false},
	}
	for _, tc := range tests {
		d, ok := procDevByPath(tc.path)
		if ok != tc.hasDev {
			t.Errorf("%s: device known %v, want %v", tc.path, ok, tc.hasDev)
			continue
		}
		if !ok {
			continue
		}
		if k := procTTYKind(d); k != tc.kind {
			t.Errorf("%s (%s): kind %q, want %q", tc.path, d, k, tc.kind)
		}
		if tc.kind == procTTYSlave {
			if d.ttyNr() != tc.ttyNr || procSlaveIndex(d) != tc.index || procSlaveDevice(tc.index) != d {
				t.Errorf("%s: tty_nr %d index %d", tc.path, d.ttyNr(), procSlaveIndex(d))
			}
		}
	}
	if procTTYKind(procDevice{188, 0}) != procTTYSerial || procTTYKind(procDevice{128, 1}) != procTTYMaster {
		t.Error("serial or legacy master")
	}
}

func TestProcMountExternals(t *testing.T) {
	mounts, err := procParseMountInfo([]byte(`1 0 0:60 /rootfs / rw - ext4 /dev/vda rw
2 1 0:60 /rootfs/app /srv rw - ext4 /dev/vda rw
3 1 0:70 /hosts /etc/hosts rw - tmpfs tmpfs rw
4 1 0:70 /sub/hosts /other/hosts rw - tmpfs tmpfs rw
5 1 0:70 /a\040b /mnt/a\040b rw - tmpfs tmpfs rw
6 1 0:71 / /data rw - xfs /dev/vdb rw
7 1 0:72 / /proc rw - proc proc rw
8 7 0:72 /sys /proc/sys ro - proc proc rw
9 1 0:73 /k8s/x /sys/fs/cgroup ro - cgroup2 cgroup2 rw
10 1 0:74 / /fuse rw - fuse.sshfs host:/ rw
11 1 0:70 /state /srv/masked-state rw - tmpfs tmpfs rw
`))
	if err != nil {
		t.Fatal(err)
	}
	host, _ := procParseMountInfo([]byte(`20 1 0:70 / /run/sandbox rw - tmpfs tmpfs rw
21 1 0:60 / / rw - ext4 /dev/vda rw
`))
	v := &procMountView{Mounts: mounts, Host: host, Root: procNSRoot(mounts)}
	if v.Root == nil || v.Root.ID != 1 {
		t.Fatalf("root: %+v", v.Root)
	}
	type ext struct {
		mp, key string
		bind    bool
	}
	var got []ext
	for _, e := range v.externals() {
		got = append(got, ext{e.M.MountPoint, e.Key, e.Bind})
	}
	want := []ext{
		{"/etc/hosts", "etc-hosts", true},
		{"/other/hosts", "other-hosts", true},
		{"/mnt/a b", "a_b", true},
		{"/data", "data", false},
		{"/fuse", "fuse", false},
		{"/srv/masked-state", "mnt-masked-state", true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("externals:\ngot  %+v\nwant %+v", got, want)
	}
	if p := v.hostPath(mounts[2]); p != "/run/sandbox/hosts" {
		t.Errorf("host path of /etc/hosts: %q", p)
	}
	if p := v.hostPath(*v.Root); p != "/rootfs" {
		t.Errorf("host path of the root: %q", p)
	}
	f := v.fix(v.externals()[0])
	if !reflect.DeepEqual(f.CRIU, criuopt.Set{ExternalMounts: []criuopt.Mount{{Key: "etc-hosts", Path: "/etc/hosts"}}}) ||
		!reflect.DeepEqual(f.Restore, criuopt.Set{ExternalMounts: []criuopt.Mount{{Key: "etc-hosts", Path: "/run/sandbox/hosts"}}, Root: "/rootfs"}) || !f.AutoFixable {
		t.Errorf("fix: %+v", f)
	}
	if f := v.fix(v.externals()[3]); f.AutoFixable || !reflect.DeepEqual(f.Restore, criuopt.Set{Root: "/rootfs"}) {
		t.Errorf("a source not mounted where kata-cr runs cannot be fixed automatically: %+v", f)
	}
}
