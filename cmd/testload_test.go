package cmd

import (
	"testing"

	"github.com/kata-cr/kata-cr/runtime/container"
	"github.com/kata-cr/kata-cr/testload"
)

// TestTestloadInImage: kata-cr-testload ships in every guest image, so a
// command naming it needs no --include and the host never looks it up; a
// named testload workload needs nothing from the host either.
func TestTestloadInImage(t *testing.T) {
	var o checkpointOptions
	for _, name := range []string{testload.Name, testload.Path} {
		if err := o.checkCommandInImage(name); err != nil {
			t.Errorf("checkCommandInImage(%q) = %v, want it accepted", name, err)
		}
	}
	if err := o.checkCommandInImage(testload.Name + "x"); err == nil {
		t.Errorf("checkCommandInImage(%q) accepted a program no image has", testload.Name+"x")
	}
	for _, name := range []string{"zombie", "nested-pidns", "vfork", "tcp-listen"} {
		w, err := container.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		files, err := w.HostFiles()
		if err != nil || len(files) != 0 {
			t.Errorf("%s: host files %v, %v: want none", name, files, err)
		}
		if got := w.ImageFiles(); got[testload.Path] != testload.Path {
			t.Errorf("%s: image files %v, want %s from the image", name, got, testload.Path)
		}
	}
	cmd, err := container.LookupWorkload("", []string{testload.Name, testload.ModeZombie})
	if err != nil {
		t.Fatal(err)
	}
	if len(cmd.Binaries) != 1 || !cmd.Binaries[0].InImage {
		t.Errorf("the command %s %s: binaries %+v, want kata-cr-testload from the image", testload.Name, testload.ModeZombie, cmd.Binaries)
	}
}
