package criu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"google.golang.org/protobuf/proto"
)

// fakeSwrkEnv makes the test binary act as `criu swrk FD` (see init): it
// reads a dump request, sends the post-dump notification and answers as
// CRIU does, failing the dump when the notification was answered with a
// failure.
const fakeSwrkEnv = "KATA_CR_TEST_FAKE_SWRK"

func init() {
	if os.Getenv(fakeSwrkEnv) == "" || len(os.Args) < 3 || os.Args[1] != "swrk" {
		return
	}
	if err := fakeSwrk(os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func fakeSwrk(fdArg string) error {
	fd, err := strconv.Atoi(fdArg)
	if err != nil {
		return err
	}
	sk := os.NewFile(uintptr(fd), "swrk")
	buf := make([]byte, 64<<10)
	read := func() (*rpc.CriuReq, error) {
		n, err := sk.Read(buf)
		if err != nil {
			return nil, err
		}
		req := &rpc.CriuReq{}
		return req, proto.Unmarshal(buf[:n], req)
	}
	send := func(r *rpc.CriuResp) error {
		data, err := proto.Marshal(r)
		if err == nil {
			_, err = sk.Write(data)
		}
		return err
	}
	req, err := read()
	if err != nil {
		return err
	}
	// The log CRIU writes in the work directory (the images directory's fd
	// as the client passed it, in the client's /proc).
	logPath := filepath.Join("/proc", strconv.Itoa(os.Getppid()), "fd", strconv.Itoa(int(req.GetOpts().GetWorkDirFd())), req.GetOpts().GetLogFile())
	if err := send(&rpc.CriuResp{Type: rpc.CriuReqType_NOTIFY.Enum(), Success: proto.Bool(true), Notify: &rpc.CriuNotify{Script: proto.String("post-dump")}}); err != nil {
		return err
	}
	ans, err := read()
	if err != nil {
		return err
	}
	if !ans.GetNotifySuccess() {
		_ = os.WriteFile(logPath, []byte("(00.500000) Error (criu/action-scripts.c:130): RPC Action script post-dump failed\n"), 0o600)
		return send(&rpc.CriuResp{Type: rpc.CriuReqType_DUMP.Enum(), Success: proto.Bool(false), CrErrmsg: proto.String("post-dump script failed")})
	}
	_ = os.WriteFile(logPath, []byte("(00.500000) Dumping finished successfully\n"), 0o600)
	return send(&rpc.CriuResp{Type: rpc.CriuReqType_DUMP.Enum(), Success: proto.Bool(true)})
}

// TestDumpFrozenAborts: DumpOpts.Frozen runs at the post-dump
// notification; its error fails the notification, so CRIU aborts the
// dump, and the dump's error carries it.
func TestDumpFrozenAborts(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(fakeSwrkEnv, "1")
	b := newBinary(exe)
	for _, tc := range []struct {
		name   string
		frozen func() error
		want   string
	}{
		{"nothing changed", func() error { return nil }, ""},
		{"a masked directory changed", func() error { return errors.New("/proc/1/root/proc/acpi holds x") }, "criu dump aborted by kata-cr while the tree was frozen: /proc/1/root/proc/acpi holds x (log: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			o := DumpOpts{PID: os.Getpid(), ImagesDir: t.TempDir(), Frozen: func() error { calls++; return tc.frozen() }}
			_, err := b.Dump(context.Background(), o)
			if calls != 1 {
				t.Errorf("Frozen ran %d times, want 1", calls)
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Dump: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Dump: %v, want an error with %q", err, tc.want)
			}
			var ce *Error
			if tc.want != "" && (!errors.As(err, &ce) || len(ce.ErrorLines) != 1) {
				t.Errorf("Dump's error does not quote the log: %#v", err)
			}
		})
	}
}
