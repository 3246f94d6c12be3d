package proc

import (
	"reflect"
	"testing"
)

func TestParseFDInfo(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want FDInfo
	}{
		{name: "ptmx", in: "pos:\t0\nflags:\t0100002\nmnt_id:\t26\nino:\t2\ntty-index:\t7\n",
			want: FDInfo{Flags: 0o100002, MntID: 26, Ino: 2, TTYIndex: 7}},
		{name: "locked file", in: "pos:\t0\nflags:\t0100000\nmnt_id:\t24\nino:\t3\nlock:\t1: FLOCK  ADVISORY  WRITE 19034 fe:00:10229223 0 EOF\n",
			want: FDInfo{Flags: 0o100000, MntID: 24, Ino: 3, TTYIndex: -1, Locks: []Lock{{ID: "1", Kind: "FLOCK", Mode: "ADVISORY",
				Access: "WRITE", PID: 19034, Major: 0xfe, Minor: 0, Inode: 10229223, Start: "0", End: "EOF", Line: "1: FLOCK  ADVISORY  WRITE 19034 fe:00:10229223 0 EOF"}}}},
		{name: "inotify", in: "pos:\t0\nflags:\t00\nmnt_id:\t15\nino:\t1\ninotify wd:1 ino:4d2 sdev:47 mask:fce ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:d204000000000000\n",
			want: FDInfo{MntID: 15, Ino: 1, TTYIndex: -1, Inotify: []string{"inotify wd:1 ino:4d2 sdev:47 mask:fce ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:d204000000000000"}}},
		{name: "fanotify", in: "pos:\t0\nflags:\t02\nmnt_id:\t15\nfanotify flags:10 event-flags:0\nfanotify mnt_id:21 mflags:0 mask:3b ignored_mask:0\n",
			want: FDInfo{Flags: 2, MntID: 15, TTYIndex: -1, Fanotify: []string{"fanotify flags:10 event-flags:0", "fanotify mnt_id:21 mflags:0 mask:3b ignored_mask:0"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseFDInfo([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
	if _, err := ParseFDInfo([]byte("mnt_id:\tx\n")); err == nil {
		t.Error("bad mnt_id: no error")
	}
}

func TestFDs(t *testing.T) {
	fs := New("testdata/children")
	fds, err := fs.FDs(10)
	if err != nil {
		t.Fatal(err)
	}
	want := []FD{{0, "/dev/null"}, {3, "socket:[7001]"}, {4, "/tmp/big (deleted)"}, {10, "anon_inode:[eventfd]"}}
	if !reflect.DeepEqual(fds, want) {
		t.Errorf("FDs = %+v, want %+v", fds, want)
	}
	fi, err := fs.ReadFDInfo(10, 4)
	if err != nil || fi.MntID != 24 || len(fi.Locks) != 1 || fi.Locks[0].PID != 10 {
		t.Errorf("fdinfo 4: %+v, %v", fi, err)
	}
	if _, err := fs.FDs(13); !Gone(err) {
		t.Errorf("fds of the exited 13: %v", err)
	}
}

func TestFDTargets(t *testing.T) {
	tests := []struct {
		target string
		ino    uint64
		sock   bool
		anon   string
		isAnon bool
	}{
		{target: "socket:[7001]", ino: 7001, sock: true},
		{target: "socket:[x]"},
		{target: "socket:[12"},
		{target: "anon_inode:[eventfd]", anon: "eventfd", isAnon: true},
		{target: "anon_inode:inotify", anon: "inotify", isAnon: true},
		{target: "/dev/null"},
	}
	for _, tc := range tests {
		ino, ok := SocketInode(tc.target)
		if ino != tc.ino || ok != tc.sock {
			t.Errorf("SocketInode(%q) = %d, %v", tc.target, ino, ok)
		}
		typ, ok := AnonType(tc.target)
		if typ != tc.anon || ok != tc.isAnon {
			t.Errorf("AnonType(%q) = %q, %v", tc.target, typ, ok)
		}
	}
}
