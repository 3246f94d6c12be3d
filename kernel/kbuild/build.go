package kbuild

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kata-cr/kata-cr/internal/execgroup"
	"github.com/kata-cr/kata-cr/internal/filecopy"
	"github.com/kata-cr/kata-cr/kernel"
)

// Build builds the kernel o describes, or returns it from the cache. The
// errors are an *ArchError (an arch Kata's build does not know), an
// *InputError (fragments or source kbuild cannot use), a
// *NotLandedError (the refusal), or a failure of the build itself.
func Build(ctx context.Context, o Options) (*Result, error) {
	start := time.Now()
	if err := o.fill(); err != nil {
		return nil, err
	}
	p, err := loadPlan(&o)
	if err != nil {
		return nil, err
	}
	src, err := resolveSource(o.CacheDir, o.Source)
	if err != nil {
		return nil, err
	}
	key, err := p.key(&o, src)
	if err != nil {
		return nil, err
	}
	if r, err := lookup(o.CacheDir, key); r != nil || err != nil {
		if r != nil {
			r.CacheHit, r.Seconds = true, seconds(time.Since(start))
		}
		return r, err
	}

	built := kernel.BuiltDir(o.CacheDir)
	tree := filepath.Join(built, "trees", src.SHA256[:12]+"-"+o.Arch)
	if err := os.MkdirAll(tree, 0o755); err != nil {
		return nil, fmt.Errorf("build kernel: %w", err)
	}
	unlock, err := lockTree(ctx, tree, o.Progress)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Another kata-cr may have built it while this one waited.
	if r, err := lookup(o.CacheDir, key); r != nil || err != nil {
		if r != nil {
			r.CacheHit, r.Seconds = true, seconds(time.Since(start))
		}
		return r, err
	}
	removeStale(tree, ".extract-")
	removeStale(built, ".new-"+key[:12]+"-")

	srcDir, objDir := filepath.Join(tree, "src"), filepath.Join(tree, "obj")
	if _, err := os.Stat(srcDir); errors.Is(err, fs.ErrNotExist) {
		o.Progress(fmt.Sprintf("unpacking %s into %s", src.Tarball, srcDir))
		if err := extract(ctx, src, srcDir); err != nil {
			return nil, err
		}
	}
	if src.Version, err = treeVersion(srcDir); err != nil {
		return nil, &InputError{fmt.Errorf("kernel source %s: %w", src.Spec, err)}
	}
	_, err = os.Stat(filepath.Join(objDir, ".config"))
	incremental := err == nil
	if err := os.MkdirAll(objDir, 0o755); err != nil {
		return nil, fmt.Errorf("build kernel: %w", err)
	}
	p.loadWhitelist(src.Version)

	work, err := os.MkdirTemp(built, ".new-"+key[:12]+"-")
	if err != nil {
		return nil, fmt.Errorf("build kernel: %w", err)
	}
	placed := false
	defer func() {
		if !placed {
			os.RemoveAll(work)
		}
	}()
	files := p.files
	sealed := []string{}
	if o.Variant == CRIU {
		frag := filepath.Join(work, "criu.conf")
		if err := os.WriteFile(frag, p.criu, 0o644); err != nil {
			return nil, fmt.Errorf("build kernel: write the CRIU fragment: %w", err)
		}
		files = append(append([]string{}, files...), frag)
		sealed = append(sealed, "criu.conf")
	}

	logPath := filepath.Join(tree, "last-build.log")
	logFile, _ := os.Create(logPath) // best effort: a full disk may refuse it
	if logFile != nil {
		defer logFile.Close()
	}
	mk := makeArch[o.Arch]
	env := append(os.Environ(), "ARCH="+mk.arch, "LC_ALL=C")

	o.Progress(fmt.Sprintf("merging %d fragments on allnoconfig with merge_config.sh -r -n (ARCH=%s)", len(files), mk.arch))
	mergeArgs := append([]string{"-r", "-n", "-O", objDir}, files...)
	if err := run(ctx, srcDir, env, o.Log, logFile, logPath, filepath.Join(srcDir, "scripts", "kconfig", "merge_config.sh"), mergeArgs...); err != nil {
		return nil, fmt.Errorf("merge kernel config fragments: %w", err)
	}
	finalPath := filepath.Join(objDir, ".config")
	data, err := os.ReadFile(finalPath)
	if err != nil {
		return nil, fmt.Errorf("merge kernel config fragments: %w", err)
	}
	final, err := kernel.Parse(bytes.NewReader(data), finalPath)
	if err != nil {
		return nil, fmt.Errorf("merge kernel config fragments: %w", err)
	}
	refused, excused := p.compare(final)
	if len(refused) > 0 {
		return nil, &NotLandedError{Options: refused, Config: finalPath}
	}

	o.Progress(fmt.Sprintf("building %s with make -j%d in %s (%s)", mk.target, o.Jobs, objDir, map[bool]string{true: "incremental: the object tree of an earlier build", false: "from scratch"}[incremental]))
	buildStart := time.Now()
	makeArgs := []string{"ARCH=" + mk.arch, "O=" + objDir, fmt.Sprintf("-j%d", o.Jobs), mk.target}
	if err := run(ctx, srcDir, env, o.Log, logFile, logPath, o.Make, makeArgs...); err != nil {
		return nil, fmt.Errorf("build kernel: %w", err)
	}
	took := time.Since(buildStart)

	rel, err := os.ReadFile(filepath.Join(objDir, "include", "config", "kernel.release"))
	if err != nil {
		return nil, fmt.Errorf("build kernel: the build wrote no kernel.release: %w", err)
	}
	release := strings.TrimSpace(string(rel))
	for _, c := range []struct{ from, to string }{
		{filepath.Join(objDir, mk.image), kernel.BuiltImage},
		{finalPath, kernel.BuiltConfig},
	} {
		if err := filecopy.Copy(c.from, filepath.Join(work, c.to), filecopy.Options{Mode: 0o644}); err != nil {
			return nil, fmt.Errorf("build kernel: keep %s: %w", c.to, describeCopy(err, built))
		}
	}
	if err := os.WriteFile(filepath.Join(work, kernel.BuiltRelease), []byte(release+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("build kernel: %w", describeCopy(err, built))
	}

	name := fmt.Sprintf("%s-%s-%s-%s", src.Version, o.Arch, o.Variant, key[:12])
	dir := filepath.Join(built, name)
	r := &Result{
		SchemaVersion: SchemaVersion,
		Name:          name, Dir: dir,
		Kernel: filepath.Join(dir, kernel.BuiltImage), Config: filepath.Join(dir, kernel.BuiltConfig),
		Release: release, Arch: o.Arch, Variant: o.Variant,
		CRIUOptions: p.criuAdds,
		Fragments:   p.root, Merged: len(p.files), Excluded: p.excluded,
		Source: *src, Kata: kataVersion(p.root),
		Whitelisted: excused, Key: key,
		BuildSeconds: seconds(took), Jobs: o.Jobs, Incremental: incremental,
		BuiltAt: time.Now().UTC().Format(time.RFC3339),
	}
	if o.Variant == CRIU {
		r.CRIUFragment = filepath.Join(dir, "criu.conf")
	}
	r.VersionNote = versionNote(r.Source, r.Kata)
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("build kernel: %w", err)
	}
	if err := os.WriteFile(filepath.Join(work, kernel.BuiltReport), append(js, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("build kernel: %w", describeCopy(err, built))
	}
	if err := kernel.SealBuilt(work, sealed...); err != nil {
		return nil, fmt.Errorf("build kernel: %w", describeCopy(err, built))
	}
	if err := os.Rename(work, dir); err != nil {
		return nil, fmt.Errorf("build kernel: put %s in place: %w", name, err)
	}
	placed = true
	r.Seconds = seconds(time.Since(start))
	return r, nil
}

// lookup returns the cached kernel of key, nil when there is none. An
// entry that fails its seal is an error: it is never used or rebuilt over
// silently.
func lookup(cache, key string) (*Result, error) {
	m, _ := filepath.Glob(filepath.Join(kernel.BuiltDir(cache), "*-"+key[:12]))
	for _, dir := range m {
		if err := kernel.VerifySums(dir); err != nil {
			return nil, fmt.Errorf("built kernel %s is damaged (%v): remove it and build again", dir, err)
		}
		data, err := os.ReadFile(filepath.Join(dir, kernel.BuiltReport))
		if err != nil {
			return nil, fmt.Errorf("built kernel %s: %w: remove it and build again", dir, err)
		}
		var r Result
		if err := json.Unmarshal(data, &r); err != nil {
			return nil, fmt.Errorf("built kernel %s: %s: %w: remove it and build again", dir, kernel.BuiltReport, err)
		}
		if r.Key == key {
			return &r, nil
		}
	}
	return nil, nil
}

// Lookup returns the build report of the built kernel name (or a path to
// its directory).
func Lookup(cache, name string) (*Result, error) {
	dir := name
	if !strings.ContainsRune(name, filepath.Separator) {
		dir = filepath.Join(kernel.BuiltDir(cache), name)
	}
	if err := kernel.VerifySums(dir); err != nil {
		return nil, fmt.Errorf("built kernel %s is damaged (%v): remove it and build again", dir, err)
	}
	data, err := os.ReadFile(filepath.Join(dir, kernel.BuiltReport))
	if err != nil {
		return nil, fmt.Errorf("built kernel %s: %w", name, unwrapPath(err))
	}
	var r Result
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("built kernel %s: %s: %w", name, kernel.BuiltReport, err)
	}
	return &r, nil
}

// removeStale removes the work directories in dir whose names start with
// prefix: what an interrupted build of the same tree left (the tree's lock
// is held, so no other build is using them).
func removeStale(dir, prefix string) {
	m, _ := filepath.Glob(filepath.Join(dir, prefix+"*"))
	for _, d := range m {
		os.RemoveAll(d)
	}
}

// describeCopy turns a full disk into words.
func describeCopy(err error, where string) error {
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("no space left on device in %s", where)
	}
	return err
}

// run runs a build tool with argv (no shell), its output going to log,
// the tree's log file and a tail quoted when it fails.
func run(ctx context.Context, dir string, env []string, log io.Writer, file *os.File, logPath, name string, args ...string) error {
	tail := &tailBuffer{max: 64 * 1024}
	cmd := execgroup.Command(ctx, name, args...)
	cmd.Dir, cmd.Env = dir, env
	var w io.Writer = io.MultiWriter(log, tail)
	if file != nil {
		w = io.MultiWriter(log, tail, &bestEffort{w: file})
	}
	cmd.Stdout, cmd.Stderr = w, w
	err := cmd.Run()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	out := tail.String()
	if noSpace(out) {
		return fmt.Errorf("%s: %w in %s", filepath.Base(name), errNoSpace, dir)
	}
	return fmt.Errorf("%s failed (%v): %s (the whole log: %s)", filepath.Base(name), err, lastError(out, err), logPath)
}

var errNoSpace = errors.New("no space left on device")

// lastError picks the line of a build log that says what failed: the last
// one naming an error, else the last line.
func lastError(out string, err error) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if strings.Contains(l, "error") || strings.Contains(l, "Error") || strings.Contains(l, "not found") {
			return l
		}
	}
	if len(lines) > 0 && strings.TrimSpace(lines[len(lines)-1]) != "" {
		return strings.TrimSpace(lines[len(lines)-1])
	}
	return err.Error()
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.buf) }

// bestEffort writes until the first error, then drops the rest: the log
// file must not stop a build (a full disk fails the build by itself).
type bestEffort struct {
	w   io.Writer
	err error
}

func (b *bestEffort) Write(p []byte) (int, error) {
	if b.err == nil {
		_, b.err = b.w.Write(p)
	}
	return len(p), nil
}
