package checks

import "testing"

// The checks parse /proc files whose content the checked tree shapes
// (mount points, socket paths): no input may panic them.

func FuzzParseMountInfo(f *testing.F) {
	f.Add([]byte("24 1 0:22 / / rw,relatime shared:1 - tmpfs tmpfs rw\n37 24 0:36 /hosts /etc/hosts rw - tmpfs tmpfs rw\n"))
	f.Add([]byte("1 2 3:4 /a\\040b /c rw - x y z\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = procParseMountInfo(data)
	})
}

func FuzzParseTCP(f *testing.F) {
	f.Add([]byte("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = procParseTCP(data)
	})
}

func FuzzParseNetUnix(f *testing.F) {
	f.Add([]byte("Num       RefCount Protocol Flags    Type St Inode Path\n0000000000000000: 00000002 00000000 00010000 0001 01 12345 /run/x.sock\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = procParseNetUnix(data)
	})
}

func FuzzParseUnixDiag(f *testing.F) {
	f.Add([]byte{20, 0, 0, 0, 3, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = procParseUnixDiag(data, map[uint32]procUnixSock{})
	})
}
