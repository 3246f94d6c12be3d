package vm

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kata-cr/kata-cr/internal/lru"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
)

// A VM template is a guest saved by qemu's migration the moment its agent
// said hello, as Kata's VM factory saves its template VM
// (enable_template): a later guest of the same kind starts from it
// (`-incoming`) instead of booting. The clone is woken with the host's
// clock and fresh bytes for its random pool (agentapi.Wake); it shares the
// rest of the template's memory, the kernel's address layout included.

// templateLayout versions the templates' key: a change in what a template
// holds or how kata-cr starts one makes the earlier ones unusable.
const templateLayout = 1

// keepTemplates is how many templates a template directory keeps, the
// ones used last: each holds the guest's memory, 100 to 200 MB.
const keepTemplates = 4

// templateExt names the template files.
const templateExt = ".vmstate"

// saveLimit bounds the saving of a template; loadLimit the start of a
// clone until qemu has loaded it.
const (
	saveLimit = 2 * time.Minute
	loadLimit = time.Minute
)

// TemplateUse says what a guest did with its VM template.
type TemplateUse struct {
	// Path is the template file.
	Path string `json:"path"`
	// Cloned is true when the guest started from the template, Saved when
	// the guest booted and was saved as the template at its hello.
	Cloned bool `json:"cloned"`
	Saved  bool `json:"saved"`
	// Seconds is how long loading (Cloned) or saving (Saved) took.
	Seconds float64 `json:"seconds"`
	// Note says why a template was not used or not saved.
	Note string `json:"note,omitempty"`
}

// errTemplateLoad says a clone did not start from its template.
var errTemplateLoad = errors.New("the VM template did not load")

// vmTemplate is the template of one guest configuration.
type vmTemplate struct {
	dir, path string
	// file is the template opened for a clone; nil when there is none
	// yet and this guest is to be saved as it.
	file *os.File
}

// openTemplate finds the template of spec's configuration in
// spec.TemplateDir: opened for a clone when it exists, else to be saved.
func openTemplate(qemu string, spec BootSpec) (*vmTemplate, error) {
	key, err := templateKey(qemu, spec)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(spec.TemplateDir, 0o700); err != nil {
		return nil, fmt.Errorf("VM template directory: %w", err)
	}
	t := &vmTemplate{dir: spec.TemplateDir, path: filepath.Join(spec.TemplateDir, key+templateExt)}
	f, err := os.Open(t.path)
	switch {
	case err == nil:
		t.file = f
		now := time.Now()
		_ = os.Chtimes(t.path, now, now)
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("VM template: %w", err)
	}
	return t, nil
}

// templateKey identifies a guest configuration: qemu (by path, size and
// time), the kernel and the image, and every argument qemu gets
// except the per-run paths (sockets, console, the shared directories):
// a clone needs the same machine and devices as its template.
func templateKey(qemu string, spec BootSpec) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "kata-cr VM template %d\n", templateLayout)
	fi, err := os.Stat(qemu)
	if err != nil {
		return "", fmt.Errorf("VM template key: %w", err)
	}
	fmt.Fprintf(h, "%s %d %d\n", qemu, fi.Size(), fi.ModTime().UnixNano())
	// The kernel and the image by content: kata-cr touches the images it
	// uses, and a kernel path may get another kernel.
	for _, p := range []string{spec.Kernel, spec.Initrd} {
		if err := hashFile(h, p); err != nil {
			return "", fmt.Errorf("VM template key: %w", err)
		}
	}
	norm := spec
	norm.Shares = make([]Share, len(spec.Shares))
	for i, sh := range spec.Shares {
		norm.Shares[i] = Share{Tag: sh.Tag, ReadOnly: sh.ReadOnly, Path: fmt.Sprintf("share%d", i)}
	}
	for _, a := range qemuArgs(norm, "console", "ctl", "data") {
		h.Write([]byte(a))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:24], nil
}

// hashFile writes path's name and content into h.
func hashFile(h io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(h, "%s\n", path)
	_, err = io.Copy(h, f)
	return err
}

// qmpArgs gives qemu its QMP socket.
func qmpArgs(path string) []string {
	return []string{"-qmp", "unix:" + strings.ReplaceAll(path, ",", ",,") + ",server=on,wait=off"}
}

// wakeClone waits until qemu has loaded the template, lets the guest run
// and wakes its agent, which then says hello.
func (vm *VM) wakeClone(ctx context.Context) error {
	start := time.Now()
	q, err := dialQMP(ctx, vm.qmpPath)
	if err != nil {
		return fmt.Errorf("%w: %w", errTemplateLoad, vm.loadFailure(err))
	}
	defer q.Close()
	deadline := start.Add(loadLimit)
	for {
		st, err := q.status()
		if err != nil {
			return fmt.Errorf("%w: %w", errTemplateLoad, vm.loadFailure(err))
		}
		if st != "inmigrate" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: qemu did not load it within %s", errTemplateLoad, loadLimit)
		}
		select {
		case <-vm.exited:
			return fmt.Errorf("%w: %w", errTemplateLoad, vm.loadFailure(nil))
		case <-ctx.Done():
			return fmt.Errorf("start the guest from its VM template: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := q.execute("cont", nil, nil); err != nil {
		return fmt.Errorf("%w: %w", errTemplateLoad, err)
	}
	vm.tplUse.Cloned, vm.tplUse.Seconds = true, time.Since(start).Seconds()
	entropy := make([]byte, 64)
	_, _ = rand.Read(entropy)
	return vm.Send(agentapi.HostMessage{Kind: agentapi.HostHello,
		Wake: &agentapi.Wake{UnixNano: time.Now().UnixNano(), Entropy: entropy}})
}

// loadFailure is why qemu did not load a template: its own message when
// it exited, else err.
func (vm *VM) loadFailure(err error) error {
	select {
	case <-vm.exited:
		if msg := qemuMessage(vm.stderr.String()); msg != "" {
			return errors.New(msg)
		}
		return fmt.Errorf("qemu %s", vm.exitStatus())
	case <-time.After(100 * time.Millisecond):
	}
	if err == nil {
		err = errors.New("qemu stopped")
	}
	return err
}

// saveTemplate saves the guest, whose agent has just said hello, as the
// template of its configuration, then lets it run on. A template that
// could not be saved is only noted: the guest carries on either way.
func (vm *VM) saveTemplate(ctx context.Context) {
	start := time.Now()
	if err := vm.tpl.save(ctx, vm.qmpPath); err != nil {
		vm.tplUse.Note = "not saved as a VM template: " + err.Error()
		vm.logf("%s", vm.tplUse.Note)
		return
	}
	vm.tplUse.Saved, vm.tplUse.Seconds = true, time.Since(start).Seconds()
	vm.logf("saved the guest as VM template %s in %s", vm.tpl.path, time.Since(start).Round(10*time.Millisecond))
}

// save stops the guest, has qemu migrate it into a file beside the
// template, resumes the guest and renames the file into place once it is
// complete: a template is whole or absent.
func (t *vmTemplate) save(ctx context.Context, qmpPath string) (err error) {
	q, err := dialQMP(ctx, qmpPath)
	if err != nil {
		return err
	}
	defer q.Close()
	f, err := os.CreateTemp(t.dir, ".partial-*"+templateExt)
	if err != nil {
		return fmt.Errorf("create the template file: %w", err)
	}
	defer func() {
		f.Close()
		if err != nil {
			os.Remove(f.Name())
		}
	}()
	if err := q.execute("stop", nil, nil); err != nil {
		return err
	}
	defer func() {
		// The guest runs on whatever became of the template.
		if cerr := q.execute("cont", nil, nil); cerr != nil && err == nil {
			err = fmt.Errorf("resume the guest after saving it: %w", cerr)
		}
	}()
	if err := q.execute("getfd", map[string]any{"fdname": "template"}, nil, int(f.Fd())); err != nil {
		return err
	}
	if err := q.execute("migrate", map[string]any{"uri": "fd:template"}, nil); err != nil {
		return err
	}
	deadline := time.Now().Add(saveLimit)
	for {
		st, desc, err := q.migration()
		if err != nil {
			return err
		}
		switch st {
		case "completed":
			if err := f.Close(); err != nil {
				return fmt.Errorf("write the template: %w", err)
			}
			if err := os.Rename(f.Name(), t.path); err != nil {
				return fmt.Errorf("put the template in place: %w", err)
			}
			pruneTemplates(t.dir, keepTemplates)
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("qemu's migration into the template %s: %s", st, desc)
		}
		if time.Now().After(deadline) {
			_ = q.execute("migrate_cancel", nil, nil)
			return fmt.Errorf("qemu did not save the guest within %s", saveLimit)
		}
		select {
		case <-ctx.Done():
			_ = q.execute("migrate_cancel", nil, nil)
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// pruneTemplates keeps the keep templates of dir used last and removes
// the others, and partial files no save is writing any more.
func pruneTemplates(dir string, keep int) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	var tpls []string
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !strings.HasSuffix(e.Name(), templateExt) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if !strings.HasPrefix(e.Name(), ".partial-") {
			tpls = append(tpls, p)
		} else if time.Since(info.ModTime()) > saveLimit {
			os.Remove(p)
		}
	}
	for _, p := range lru.Beyond(tpls, keep, 0) {
		os.Remove(p)
	}
}
