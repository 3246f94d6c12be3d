package proc

import (
	"reflect"
	"testing"
)

func TestParseLocks(t *testing.T) {
	in := "1: POSIX  ADVISORY  WRITE 1234 08:02:1311 0 EOF\n" +
		"1: -> POSIX  ADVISORY  WRITE 1240 08:02:1311 0 EOF\n" +
		"2: FLOCK  ADVISORY  READ 99 00:2e:77 0 EOF\n" +
		"3: OFDLCK ADVISORY  WRITE -1 fd:01:5 100 199\n" +
		"4: LEASE  ACTIVE    READ 55 00:19:42 0 EOF\n"
	got, err := ParseLocks([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Lock{
		{ID: "1", Kind: "POSIX", Mode: "ADVISORY", Access: "WRITE", PID: 1234, Major: 8, Minor: 2, Inode: 1311, Start: "0", End: "EOF"},
		{ID: "1", Blocked: true, Kind: "POSIX", Mode: "ADVISORY", Access: "WRITE", PID: 1240, Major: 8, Minor: 2, Inode: 1311, Start: "0", End: "EOF"},
		{ID: "2", Kind: "FLOCK", Mode: "ADVISORY", Access: "READ", PID: 99, Major: 0, Minor: 0x2e, Inode: 77, Start: "0", End: "EOF"},
		{ID: "3", Kind: "OFDLCK", Mode: "ADVISORY", Access: "WRITE", PID: -1, Major: 0xfd, Minor: 1, Inode: 5, Start: "100", End: "199"},
		{ID: "4", Kind: "LEASE", Mode: "ACTIVE", Access: "READ", PID: 55, Major: 0, Minor: 0x19, Inode: 42, Start: "0", End: "EOF"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d locks, want %d", len(got), len(want))
	}
	for i := range want {
		got[i].Line = ""
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("lock %d: got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{
		"1: POSIX ADVISORY WRITE\n",
		"1: POSIX  ADVISORY  WRITE abc 08:02:1311 0 EOF\n",
		"1: POSIX  ADVISORY  WRITE 12 08:02 0 EOF\n",
		"POSIX  ADVISORY  WRITE 12 08:02:1 0 EOF x\n",
	} {
		if _, err := ParseLocks([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestLocks(t *testing.T) {
	locks, err := New("testdata/children").Locks()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range locks {
		got = append(got, l.Line)
	}
	want := []string{
		"1: FLOCK  ADVISORY  WRITE 10 fe:00:10229223 0 EOF",
		"1: -> FLOCK  ADVISORY  WRITE 12 fe:00:10229223 0 EOF",
		"2: OFDLCK ADVISORY  READ  -1 00:06:9 0 EOF",
	}
	if !reflect.DeepEqual(got, want) || !locks[1].Blocked || locks[2].PID != -1 {
		t.Errorf("locks %+v", locks)
	}
	if _, err := New("testdata/parents").Locks(); !Gone(err) {
		t.Errorf("no locks file: %v", err)
	}
}
