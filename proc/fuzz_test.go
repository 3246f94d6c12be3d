package proc

import "testing"

// The parsers of /proc files read what a process (any process of the
// checked tree) can shape: none may panic on any input.

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte("Name:\tsleep\nNStgid:\t91\t1\nNSpid:\t91\t1\nNSpgid:\t91\t1\nNSsid:\t1\t0\nUid:\t0\t0\t0\t0\nCapEff:\t000001ffffffffff\n"))
	f.Add([]byte("NSpid:\t\nNSsid:\tx\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ParseStatus(data)
	})
}

func FuzzParseFDInfo(f *testing.F) {
	f.Add([]byte("pos:\t0\nflags:\t02\nmnt_id:\t24\nino:\t1234\nlock:\t1: FLOCK  ADVISORY  WRITE 91 00:18:1234 0 EOF\n"))
	f.Add([]byte("inotify wd:1 ino:a sdev:2 mask:fff ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:0\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ParseFDInfo(data)
	})
}

func FuzzParseLocks(f *testing.F) {
	f.Add([]byte("1: FLOCK  ADVISORY  WRITE 91 00:18:1234 0 EOF\n2: POSIX  ADVISORY  READ 92 fd:01:99 0 100\n3: OFDLCK ADVISORY  WRITE -1 00:05:7 0 EOF\n"))
	f.Add([]byte("1: -> FLOCK ADVISORY WRITE 91 00:18:1234 0 EOF\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ParseLocks(data)
	})
}

func FuzzParseChildren(f *testing.F) {
	f.Add([]byte("92 93 \n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ParseChildren(data)
	})
}
