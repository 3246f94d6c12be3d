package crjob

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kata-cr/kata-cr/checks"
	"github.com/kata-cr/kata-cr/criu/criuopt"
	"github.com/kata-cr/kata-cr/images"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
)

// TestPodReconnect: each unix socket the dump declared external gets a new
// connection to its peer's address, reached through the peer's
// /proc/PID/root (here this process's), keyed by the dumped socket's own
// inode; a socket without a known peer address is an error.
func TestPodReconnect(t *testing.T) {
	dir := t.TempDir()
	addr := filepath.Join(dir, "app.sock")
	ln, err := net.Listen("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("hello\n"))
			c.Close()
		}
	}()
	known := checks.PodUnixPeer{Inode: 1001, PeerContainer: "server", PeerPID: os.Getpid(), Address: addr}
	for _, tc := range []struct {
		name    string
		conns   []checks.PodUnixPeer
		dump    []uint32
		wantKey string
		wantErr string
	}{
		{"a connection to the server", []checks.PodUnixPeer{known}, []uint32{1001}, "socket:[1001]", ""},
		{"nothing declared external", []checks.PodUnixPeer{known}, nil, "", ""},
		{"an inode the checks did not see", []checks.PodUnixPeer{known}, []uint32{1002}, "", "no peer address in the pod is known"},
		{"a peer without an address", []checks.PodUnixPeer{{Inode: 1001, PeerPID: os.Getpid()}}, []uint32{1001}, "", "no peer address in the pod is known"},
		{"a peer that is gone", []checks.PodUnixPeer{{Inode: 1001, PeerContainer: "server", PeerPID: os.Getpid(), Address: addr + ".gone"}}, []uint32{1001}, "", "connect a new socket to " + addr + ".gone in container server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pj := &podJob{d: &Deps{Host: &fakeHost{}}, conns: map[string][]checks.PodUnixPeer{"client": tc.conns}}
			fds, err := pj.reconnect("client", criuopt.Set{UnixSockets: tc.dump})
			defer closeInherited(fds)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantKey == "" {
				if len(fds) != 0 {
					t.Fatalf("%d files for no external socket", len(fds))
				}
				return
			}
			if len(fds) != 1 || fds[0].Key != tc.wantKey {
				t.Fatalf("inherit-fds %+v, want one keyed %s", fds, tc.wantKey)
			}
			buf := make([]byte, 6)
			if n, err := fds[0].File.Read(buf); err != nil || string(buf[:n]) != "hello\n" {
				t.Errorf("the new connection read %q, %v: not connected to the server", buf[:n], err)
			}
		})
	}
}

// TestPodHost: the pod job keeps the checkpoint job's report (it sends the
// completed one itself) and the manifest of the saved images, and records
// the other containers when the images are sent.
func TestPodHost(t *testing.T) {
	fh := &fakeHost{}
	dumped := 0
	h := &podHost{Host: fh, dumped: func(string) error { dumped++; return nil }}
	if err := h.Send(agentapi.Event{Kind: agentapi.EventLog, Message: "x"}); err != nil {
		t.Fatal(err)
	}
	if err := h.Send(agentapi.Event{Kind: agentapi.EventReport, Report: nil}); err != nil {
		t.Fatal(err)
	}
	if len(fh.reports) != 0 {
		t.Errorf("the checkpoint job's report went to the host")
	}
	saved, err := h.SendImages(images.Manifest{Workload: "pod-client"}, "/images")
	if err != nil || !saved.OK || !h.saved || h.manifest.Workload != "pod-client" || dumped != 1 || len(fh.sent) != 1 {
		t.Errorf("saved %+v %v; kept %v %q; dumped %d; sent %d", saved, err, h.saved, h.manifest.Workload, dumped, len(fh.sent))
	}
}
