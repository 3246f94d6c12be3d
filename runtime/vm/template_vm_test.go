package vm_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kata-cr/kata-cr/runtime/agentapi"
	"github.com/kata-cr/kata-cr/runtime/vm"
)

// TestVMTemplate: the first guest of a configuration is saved as its VM
// template once its agent is up and runs its job on; the next starts from
// the template, says hello as a clone with the host's clock (the template's
// stopped when it was saved) and runs the doctor; a damaged template is
// replaced by a boot that saves it again; another device layout gets a
// template of its own. No qemu is left.
func TestVMTemplate(t *testing.T) {
	k := testKernel(t)
	img := guestImage(t, k)
	dir := t.TempDir()
	spec := vm.BootSpec{Kernel: k.Image, Initrd: img, TemplateDir: dir, TempDir: t.TempDir(), Logf: t.Logf}
	doctor := agentapi.Job{Kind: agentapi.JobDoctor}
	run := func(name string, spec vm.BootSpec) *vm.Result {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		res, err := vm.Run(ctx, spec, doctor, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if res.Report == nil || len(res.Report.Findings) == 0 {
			t.Fatalf("%s: no doctor report", name)
		}
		if res.Template == nil || res.Agent == nil {
			t.Fatalf("%s: template %+v, agent %+v", name, res.Template, res.Agent)
		}
		t.Logf("%s: boot %s, template %+v", name, res.Boot, *res.Template)
		return res
	}

	first := run("first guest", spec)
	if !first.Template.Saved || first.Template.Cloned || first.Agent.Clone {
		t.Fatalf("first guest: template %+v, clone %v: want it saved, not cloned", *first.Template, first.Agent.Clone)
	}
	fi, err := os.Stat(first.Template.Path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() == 0 {
		t.Fatalf("template %s: %v %v: want a non-empty file of mode 0600 (it holds guest memory)", first.Template.Path, fi, err)
	}

	// The template's clock stopped at its save: a clone woken without the
	// host's time would be these seconds behind.
	time.Sleep(3 * time.Second)
	before := time.Now()
	clone := run("clone", spec)
	if !clone.Template.Cloned || clone.Template.Saved || !clone.Agent.Clone || clone.Template.Path != first.Template.Path {
		t.Errorf("clone: template %+v, clone %v: want it started from %s", *clone.Template, clone.Agent.Clone, first.Template.Path)
	}
	if guest := time.Unix(0, clone.Agent.UnixNano); guest.Before(before.Add(-time.Second)) || guest.After(time.Now().Add(time.Second)) {
		t.Errorf("clone's clock at its hello %s, host between %s and now: the wake did not set it", guest, before)
	}
	if got, want := findingStatuses(clone), findingStatuses(first); !sameStatuses(got, want) {
		t.Errorf("the clone's doctor found\n%v\nthe booted guest's\n%v", got, want)
	}

	// A damaged template: qemu refuses it, kata-cr boots and saves anew.
	if err := os.Truncate(first.Template.Path, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	again := run("damaged template", spec)
	if !again.Template.Saved || again.Template.Cloned || !strings.Contains(again.Template.Note, "did not load") {
		t.Errorf("damaged template: %+v: want it noted as not loaded, the guest booted and saved again", *again.Template)
	}
	if fi2, err := os.Stat(first.Template.Path); err != nil || fi2.Size() < fi.Size()/2+1 {
		t.Errorf("template after the damaged one: %v %v: want a whole one saved again", fi2, err)
	}

	// Another device layout (a share) cannot start from this template.
	shared := spec
	shared.Shares = []vm.Share{{Tag: "kata-cr.test", Path: t.TempDir(), ReadOnly: true}}
	other := run("guest with a share", shared)
	if !other.Template.Saved || other.Template.Path == first.Template.Path {
		t.Errorf("guest with a share: %+v: want a template of its own", *other.Template)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.vmstate"))
	if len(files) != 2 {
		t.Errorf("templates %v: want two", files)
	}
	checkNoQEMU(t)
}

// findingStatuses maps a report's finding IDs to their statuses.
func findingStatuses(res *vm.Result) map[string]string {
	out := map[string]string{}
	for _, f := range res.Report.Findings {
		out[f.ID] = string(f.Status)
	}
	return out
}

func sameStatuses(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
