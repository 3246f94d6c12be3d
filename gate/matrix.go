// Package gate is kata-cr's CI gate: a matrix of guest kernels x CRIU
// builds x workloads, each cell a run of the corpus (corpus.Run) with raw
// CRIU judging every prediction, the cells run in parallel, the results
// rendered for people and for CI (text, JSON, JUnit XML, Markdown) and
// compared with a baseline from an earlier run.
package gate

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/kata-cr/kata-cr/corpus"
	"github.com/kata-cr/kata-cr/guestimage"
	"github.com/kata-cr/kata-cr/internal/safefile"
	"github.com/kata-cr/kata-cr/internal/tomlfile"
	"github.com/kata-cr/kata-cr/kernel"
	"github.com/kata-cr/kata-cr/runtime/container"
)

// DefaultTimeLimit bounds one cell when the matrix says nothing: the whole
// corpus in one cell takes 4 to 6 minutes under TCG.
const DefaultTimeLimit = 30 * time.Minute

// Expect is what a cell expects of a workload.
type Expect string

// The expectations.
const (
	// ExpectJudged (a workload without expect) passes when CRIU agrees
	// with kata-cr's prediction: restored and verified, or predicted
	// unfixable and left running.
	ExpectJudged Expect = "judged"
	// ExpectRestore passes only when the workload was checkpointed,
	// restored in a fresh guest and verified.
	ExpectRestore Expect = "restore"
	// ExpectUnfixable passes only when kata-cr predicted the dump to
	// fail, CRIU agreed, and the workload was left running.
	ExpectUnfixable Expect = "unfixable"
)

// Kernel is a guest kernel of the matrix: exactly one of Debian (a series
// kata-cr caches: make guest-kernel), Built (a kernel `kata-cr kernel
// build` built, by name), Image (a vmlinuz or bzImage with its Config and
// Modules) and KataConfig (the kernel Kata's configuration.toml names).
type Kernel struct {
	Name       string `json:"name"`
	Debian     string `json:"debian,omitempty"`
	Built      string `json:"built,omitempty"`
	Image      string `json:"image,omitempty"`
	Config     string `json:"config,omitempty"`
	Modules    string `json:"modules,omitempty"`
	KataConfig string `json:"kata_config,omitempty"`
}

// Source says where the kernel comes from.
func (k Kernel) Source() string {
	switch {
	case k.Debian != "":
		return "Debian " + k.Debian
	case k.Built != "":
		return "built " + k.Built
	case k.KataConfig != "":
		return "Kata configuration " + k.KataConfig
	}
	return "image " + k.Image
}

// CRIU is a CRIU build of the matrix: exactly one of the host's (Host,
// or the Binary given), a Debian Suite's (guestimage.Suites) and the one
// in a Rootfs tar.
type CRIU struct {
	Name   string `json:"name"`
	Host   bool   `json:"host,omitempty"`
	Binary string `json:"binary,omitempty"`
	Suite  string `json:"suite,omitempty"`
	Rootfs string `json:"rootfs,omitempty"`
}

// Source says where the CRIU comes from.
func (c CRIU) Source() string {
	switch {
	case c.Suite != "":
		return "Debian " + c.Suite
	case c.Rootfs != "":
		return "rootfs " + c.Rootfs
	case c.Binary != "":
		return "host " + c.Binary
	}
	return "host"
}

// Workload is a workload of the matrix: a corpus entry, a command with
// the files it needs in the guest, or an OCI bundle (its rootfs shared
// with both guests over virtio-9p).
type Workload struct {
	Name     string   `json:"name"`
	Corpus   string   `json:"corpus,omitempty"`
	Command  []string `json:"command,omitempty"`
	Include  []string `json:"include,omitempty"`
	Terminal bool     `json:"terminal,omitempty"`
	Bundle   string   `json:"bundle,omitempty"`
	// VerifyExec are the workload's own probes (a command's or a
	// bundle's), each an argv run in the container before the dump and in
	// the restored container.
	VerifyExec [][]string `json:"verify_exec,omitempty"`
	Expect     Expect     `json:"expect"`
	// bundle is Bundle as read when the matrix was checked.
	bundle *container.Bundle
	// Line is where the matrix file declares it (0: the default matrix).
	Line int `json:"-"`
}

// Options are a cell's options.
type Options struct {
	// AutoFix applies kata-cr's fixers (modules, the setsid restart)
	// before the planned dump; without it the plan has CRIU options only.
	AutoFix bool `json:"auto_fix"`
	// RuntimeSetsid, when set, starts every workload's init as runc and
	// Kata's agent 4.1.0 do (true) or as Kata's agent 2.5.0 to 4.0.0 do
	// (false: not a session leader); unset keeps each corpus entry's own.
	RuntimeSetsid *bool         `json:"runtime_setsid,omitempty"`
	TimeLimit     time.Duration `json:"time_limit"`
}

// Cell is one kernel and one CRIU running the workloads.
type Cell struct {
	Name      string     `json:"name"`
	Kernel    Kernel     `json:"kernel"`
	CRIU      CRIU       `json:"criu"`
	Workloads []Workload `json:"workloads"`
	Options   Options    `json:"options"`
	// Line is where the matrix file declares the cell: its [[cell]], or
	// its kernel's [[kernel]] for a cell of the cross product.
	Line int `json:"-"`
}

// Entries are the cell's workloads as corpus entries. Each bundle's rootfs
// is the share tagged BundleTag(n), n counting the cell's bundles.
func (c Cell) Entries() []corpus.Entry {
	out := make([]corpus.Entry, 0, len(c.Workloads))
	bundles := 0
	for _, w := range c.Workloads {
		var e corpus.Entry
		switch {
		case w.bundle != nil:
			e = corpus.Entry{Name: w.Name, Workload: container.BundleWorkload, Covers: "the OCI bundle " + w.Bundle,
				Bundle: w.bundle, RootfsTag: BundleTag(bundles), VerifyExec: w.VerifyExec}
			bundles++
		case w.Corpus != "":
			for _, ce := range corpus.Entries {
				if ce.Name == w.Corpus {
					e = ce
				}
			}
			e.Name = w.Name
		default:
			e = corpus.Entry{Name: w.Name, Workload: container.CommandWorkload, Covers: "the command " + strings.Join(w.Command, " "),
				Command: w.Command, Include: w.Include, Terminal: w.Terminal, VerifyExec: w.VerifyExec}
		}
		if c.Options.RuntimeSetsid != nil {
			e.OldAgent = !*c.Options.RuntimeSetsid
		}
		out = append(out, e)
	}
	return out
}

// BundleTag is the virtio-9p tag of the rootfs of a cell's n-th bundle.
func BundleTag(n int) string {
	return fmt.Sprintf("%s.%d", container.BundleRootfsTag, n)
}

// Matrix is the gate's matrix: its cells, in order.
type Matrix struct {
	// File is the matrix file, empty for the default matrix.
	File  string
	Cells []Cell
}

// Default is the matrix without a file: the corpus's cells with the whole
// corpus, every workload judged by CRIU.
func Default() *Matrix {
	m := &Matrix{}
	for _, c := range corpus.Cells {
		cell := Cell{Name: c.Name, Kernel: Kernel{Name: c.KernelVersion, Debian: c.KernelVersion},
			CRIU: CRIU{Name: c.CRIUSuite, Suite: c.CRIUSuite}, Options: Options{AutoFix: true, TimeLimit: DefaultTimeLimit}}
		for _, e := range corpus.Entries {
			cell.Workloads = append(cell.Workloads, Workload{Name: e.Name, Corpus: e.Name, Expect: ExpectJudged})
		}
		m.Cells = append(m.Cells, cell)
	}
	return m
}

// MatrixError is a mistake in a matrix file: one line naming the file, the line
// and the key.
type MatrixError = tomlfile.Error

// The matrix file as TOML has it.
type fileOptions struct {
	AutoFix       *bool   `toml:"auto_fix"`
	RuntimeSetsid *bool   `toml:"runtime_setsid"`
	TimeLimit     *string `toml:"time_limit"`
}

type fileKernel struct {
	Name       string `toml:"name"`
	Debian     string `toml:"debian"`
	Built      string `toml:"built"`
	Image      string `toml:"image"`
	Config     string `toml:"config"`
	Modules    string `toml:"modules"`
	KataConfig string `toml:"kata_config"`
}

type fileCRIU struct {
	Name   string `toml:"name"`
	Host   bool   `toml:"host"`
	Binary string `toml:"binary"`
	Suite  string `toml:"suite"`
	Rootfs string `toml:"rootfs"`
}

type fileWorkload struct {
	Name     string   `toml:"name"`
	Corpus   string   `toml:"corpus"`
	Command  []string `toml:"command"`
	Include  []string `toml:"include"`
	Terminal bool     `toml:"terminal"`
	Bundle   string   `toml:"bundle"`
	// VerifyExec are the workload's probes: an array of argv arrays.
	VerifyExec [][]string `toml:"verify_exec"`
	Expect     string     `toml:"expect"`
}

type fileCell struct {
	Name      string            `toml:"name"`
	Kernel    string            `toml:"kernel"`
	CRIU      string            `toml:"criu"`
	Workloads []string          `toml:"workloads"`
	Expect    map[string]string `toml:"expect"`
	fileOptions
}

type file struct {
	Options  fileOptions    `toml:"options"`
	Kernel   []fileKernel   `toml:"kernel"`
	CRIU     []fileCRIU     `toml:"criu"`
	Workload []fileWorkload `toml:"workload"`
	Cell     []fileCell     `toml:"cell"`
}

// knownKeys are the keys of each table, for the message about an unknown
// one.
var knownKeys = map[string]string{
	"":         "options, kernel, criu, workload, cell",
	"options":  "auto_fix, runtime_setsid, time_limit",
	"kernel":   "name, debian, built, image, config, modules, kata_config",
	"criu":     "name, host, binary, suite, rootfs",
	"workload": "name, corpus, command, bundle, include, terminal, verify_exec, expect",
	"cell":     "name, kernel, criu, workloads, expect, auto_fix, runtime_setsid, time_limit",
}

// maxMatrixSize bounds what is read of a matrix file.
const maxMatrixSize = 1 << 20

// Load reads and checks the matrix file at path. Every mistake is an
// *MatrixError; nothing is booted or built. Relative paths in the file are
// relative to the file's directory.
func Load(path string) (*Matrix, error) {
	f, err := safefile.Open(path)
	if err != nil {
		return nil, &MatrixError{File: path, Msg: fmt.Sprintf("cannot read the matrix: %v", err)}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxMatrixSize+1))
	if err != nil {
		return nil, &MatrixError{File: path, Msg: fmt.Sprintf("cannot read the matrix: %v", err)}
	}
	if len(data) > maxMatrixSize {
		return nil, &MatrixError{File: path, Msg: fmt.Sprintf("the matrix is over %d bytes", maxMatrixSize)}
	}
	return Parse(path, data)
}

// Parse checks a matrix file's text; name is the file, for messages and
// for relative paths.
func Parse(name string, data []byte) (*Matrix, error) {
	var f file
	md, err := toml.Decode(string(data), &f)
	if err != nil {
		return nil, tomlfile.DecodeError(name, err)
	}
	p := &parser{name: name, dir: filepath.Dir(name), loc: newLocator(data)}
	if err := p.undecoded(md.Undecoded()); err != nil {
		return nil, err
	}
	return p.matrix(&f)
}

type parser struct {
	name string
	dir  string
	loc  *locator
}

// errAt is a mistake at key of the idx-th table (or the table) named.
func (p *parser) errAt(table string, idx int, key, format string, args ...any) error {
	full := key
	if table != "" {
		full = table + "." + key
		if key == "" {
			full = table
		}
	}
	return &MatrixError{File: p.name, Line: p.loc.line(table, idx, key), Key: full, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) undecoded(keys []toml.Key) error {
	return p.loc.Undecoded(p.name, keys, tomlfile.Keys{Known: knownKeys, Tables: map[string]bool{"options": true}})
}

// path makes a path of the file absolute, relative to the file's
// directory.
func (p *parser) path(s string) string {
	if s == "" || filepath.IsAbs(s) {
		return s
	}
	return filepath.Join(p.dir, s)
}

func (p *parser) matrix(f *file) (*Matrix, error) {
	def := Options{AutoFix: true, TimeLimit: DefaultTimeLimit}
	if err := p.options(&def, f.Options, "options", -1); err != nil {
		return nil, err
	}
	kernels, err := p.kernels(f.Kernel)
	if err != nil {
		return nil, err
	}
	crius, err := p.crius(f.CRIU)
	if err != nil {
		return nil, err
	}
	workloads, err := p.workloads(f.Workload)
	if err != nil {
		return nil, err
	}
	m := &Matrix{File: p.name}
	if len(f.Cell) > 0 {
		if err := p.cells(m, f.Cell, kernels, crius, workloads, def); err != nil {
			return nil, err
		}
		return m, nil
	}
	switch {
	case len(kernels) == 0 && len(crius) == 0:
		return nil, &MatrixError{File: p.name, Msg: "empty matrix: no cells: add [[kernel]] and [[criu]] tables (each kernel runs with each CRIU), or [[cell]] tables"}
	case len(kernels) == 0:
		return nil, p.errAt("criu", 0, "", "no cells: the matrix has CRIU builds but no [[kernel]] to run them on")
	case len(crius) == 0:
		return nil, p.errAt("kernel", 0, "", "no cells: the matrix has kernels but no [[criu]] to run on them")
	}
	for ki, k := range kernels {
		for _, c := range crius {
			m.Cells = append(m.Cells, Cell{Name: k.Name + "/" + c.Name, Kernel: k, CRIU: c, Workloads: workloads,
				Options: def, Line: p.loc.line("kernel", ki, "")})
		}
	}
	return m, nil
}

func (p *parser) options(o *Options, fo fileOptions, table string, idx int) error {
	if fo.AutoFix != nil {
		o.AutoFix = *fo.AutoFix
	}
	if fo.RuntimeSetsid != nil {
		v := *fo.RuntimeSetsid
		o.RuntimeSetsid = &v
	}
	if fo.TimeLimit != nil {
		d, err := time.ParseDuration(*fo.TimeLimit)
		if err != nil || d <= 0 {
			return p.errAt(table, idx, "time_limit", "%q is not a positive duration: give one such as \"20m\"", *fo.TimeLimit)
		}
		o.TimeLimit = d
	}
	return nil
}

// exactlyOne checks that one of the keys given is set.
func (p *parser) exactlyOne(table string, idx int, set map[string]bool, keys ...string) error {
	var given []string
	for _, k := range keys {
		if set[k] {
			given = append(given, k)
		}
	}
	switch len(given) {
	case 1:
		return nil
	case 0:
		return p.errAt(table, idx, "", "give one of %s", strings.Join(keys, ", "))
	}
	return p.errAt(table, idx, given[1], "%s and %s both given: give one", given[0], given[1])
}

func (p *parser) regularFile(table string, idx int, key, path string) error {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return p.errAt(table, idx, key, "%s: %v", path, errorsUnwrapPath(err))
	case !fi.Mode().IsRegular():
		return p.errAt(table, idx, key, "%s is not a regular file", path)
	}
	return nil
}

func errorsUnwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func (p *parser) kernels(fk []fileKernel) ([]Kernel, error) {
	var out []Kernel
	seen := map[string]int{}
	for i, k := range fk {
		if err := p.exactlyOne("kernel", i, map[string]bool{"debian": k.Debian != "", "built": k.Built != "", "image": k.Image != "", "kata_config": k.KataConfig != ""},
			"debian", "built", "image", "kata_config"); err != nil {
			return nil, err
		}
		kk := Kernel{Name: k.Name, Debian: k.Debian, Built: k.Built, Image: p.path(k.Image), Config: p.path(k.Config), Modules: p.path(k.Modules), KataConfig: p.path(k.KataConfig)}
		switch {
		case k.Debian != "":
			if !slices.Contains(kernel.Series, k.Debian) {
				return nil, p.errAt("kernel", i, "debian", "%q is not a Debian kernel series kata-cr fetches: use %s", k.Debian, strings.Join(kernel.Series, ", "))
			}
			if kk.Name == "" {
				kk.Name = k.Debian
			}
		case k.Built != "":
			if _, err := kernel.Find(kernel.FindOptions{Version: k.Built}); err != nil {
				return nil, p.errAt("kernel", i, "built", "%v", err)
			}
			if kk.Name == "" {
				kk.Name = k.Built
			}
		case k.Image != "":
			if err := p.regularFile("kernel", i, "image", kk.Image); err != nil {
				return nil, err
			}
			if kk.Name == "" {
				kk.Name = filepath.Base(kk.Image)
			}
		default:
			if err := p.regularFile("kernel", i, "kata_config", kk.KataConfig); err != nil {
				return nil, err
			}
			if kk.Name == "" {
				kk.Name = "kata"
			}
		}
		if k.Config != "" {
			if k.Image == "" {
				return nil, p.errAt("kernel", i, "config", "config goes with image: a Debian or Kata kernel brings its own")
			}
			if err := p.regularFile("kernel", i, "config", kk.Config); err != nil {
				return nil, err
			}
		}
		if k.Modules != "" {
			if k.Image == "" {
				return nil, p.errAt("kernel", i, "modules", "modules goes with image: a Debian or Kata kernel brings its own")
			}
			if fi, err := os.Stat(kk.Modules); err != nil || !fi.IsDir() {
				return nil, p.errAt("kernel", i, "modules", "%s is not a directory: give the kernel's modules directory (with modules.dep)", kk.Modules)
			}
		}
		if j, ok := seen[kk.Name]; ok {
			return nil, p.errAt("kernel", i, "name", "kernel %q is declared twice (first at line %d)", kk.Name, p.loc.line("kernel", j, ""))
		}
		for j, o := range out {
			if o.Source() == kk.Source() && o.Config == kk.Config && o.Modules == kk.Modules {
				return nil, p.errAt("kernel", i, "", "kernel %q is the same kernel as %q (line %d): the cells would run twice", kk.Name, o.Name, p.loc.line("kernel", j, ""))
			}
		}
		seen[kk.Name] = i
		out = append(out, kk)
	}
	return out, nil
}

func (p *parser) crius(fc []fileCRIU) ([]CRIU, error) {
	var out []CRIU
	seen := map[string]int{}
	for i, c := range fc {
		if err := p.exactlyOne("criu", i, map[string]bool{"host": c.Host, "binary": c.Binary != "", "suite": c.Suite != "", "rootfs": c.Rootfs != ""},
			"host", "binary", "suite", "rootfs"); err != nil {
			return nil, err
		}
		cc := CRIU{Name: c.Name, Host: c.Host, Binary: p.path(c.Binary), Suite: c.Suite, Rootfs: p.path(c.Rootfs)}
		def := "host"
		switch {
		case c.Suite != "":
			if _, err := guestimage.LookupSuite(c.Suite); err != nil {
				return nil, p.errAt("criu", i, "suite", "%q is not a Debian suite kata-cr ships CRIU from: use %s", c.Suite, strings.Join(guestimage.SuiteNames(), ", "))
			}
			def = c.Suite
		case c.Rootfs != "":
			if err := p.regularFile("criu", i, "rootfs", cc.Rootfs); err != nil {
				return nil, err
			}
			def = filepath.Base(cc.Rootfs)
		case c.Binary != "":
			if err := p.regularFile("criu", i, "binary", cc.Binary); err != nil {
				return nil, err
			}
		}
		if cc.Name == "" {
			cc.Name = def
		}
		if j, ok := seen[cc.Name]; ok {
			return nil, p.errAt("criu", i, "name", "CRIU %q is declared twice (first at line %d)", cc.Name, p.loc.line("criu", j, ""))
		}
		for j, o := range out {
			if o.Source() == cc.Source() {
				return nil, p.errAt("criu", i, "", "CRIU %q is the same CRIU as %q (line %d): the cells would run twice", cc.Name, o.Name, p.loc.line("criu", j, ""))
			}
		}
		seen[cc.Name] = i
		out = append(out, cc)
	}
	return out, nil
}

func (p *parser) expect(table string, idx int, key, s string) (Expect, error) {
	switch Expect(s) {
	case "":
		return "", nil
	case ExpectRestore, ExpectUnfixable, ExpectJudged:
		return Expect(s), nil
	}
	return "", p.errAt(table, idx, key, "%q: expect restore (restored and verified), unfixable (predicted to fail, CRIU agreeing, left running) or judged (either, as CRIU agrees)", s)
}

func (p *parser) workloads(fw []fileWorkload) ([]Workload, error) {
	if len(fw) == 0 {
		var out []Workload
		for _, e := range corpus.Entries {
			out = append(out, Workload{Name: e.Name, Corpus: e.Name, Expect: ExpectJudged})
		}
		return out, nil
	}
	var out []Workload
	seen := map[string]int{}
	for i, w := range fw {
		if err := p.exactlyOne("workload", i, map[string]bool{"corpus": w.Corpus != "", "command": len(w.Command) > 0, "bundle": w.Bundle != ""},
			"corpus", "command", "bundle"); err != nil {
			return nil, err
		}
		ex, err := p.expect("workload", i, "expect", w.Expect)
		if err != nil {
			return nil, err
		}
		ww := Workload{Name: w.Name, Corpus: w.Corpus, Command: w.Command, Terminal: w.Terminal, Expect: ex, Line: p.loc.line("workload", i, "")}
		if err := p.probes(&ww, w, i); err != nil {
			return nil, err
		}
		switch {
		case w.Bundle != "":
			if err := p.bundle(&ww, w, i); err != nil {
				return nil, err
			}
		case w.Corpus != "":
			if !slices.ContainsFunc(corpus.Entries, func(e corpus.Entry) bool { return e.Name == w.Corpus }) {
				return nil, p.errAt("workload", i, "corpus", "%q is not a corpus entry: `kata-cr corpus --list` lists them", w.Corpus)
			}
			for _, k := range []struct {
				set  bool
				name string
			}{{len(w.Include) > 0, "include"}, {w.Terminal, "terminal"}} {
				if k.set {
					return nil, p.errAt("workload", i, k.name, "%s goes with command: a corpus entry brings its own", k.name)
				}
			}
			if ww.Name == "" {
				ww.Name = w.Corpus
			}
			if ww.Expect == "" {
				ww.Expect = ExpectJudged
			}
		default:
			if w.Command[0] == "" {
				return nil, p.errAt("workload", i, "command", "the command's first word is empty")
			}
			for _, inc := range w.Include {
				host, guest, hasGuest := strings.Cut(inc, ":")
				abs := p.path(host)
				if hasGuest {
					abs += ":" + guest
				}
				e, err := guestimage.ParseInclude(abs)
				if err != nil || host == "" {
					return nil, p.errAt("workload", i, "include", "%q: give HOST or HOST:GUEST, GUEST an absolute path", inc)
				}
				if err := p.regularFile("workload", i, "include", e.Host); err != nil {
					return nil, err
				}
				ww.Include = append(ww.Include, abs)
			}
			if ww.Name == "" {
				ww.Name = filepath.Base(w.Command[0])
			}
			// A user's own workload is in the gate to be checkpointed.
			if ww.Expect == "" {
				ww.Expect = ExpectRestore
			}
		}
		if strings.ContainsAny(ww.Name, "/ \t\n") || ww.Name == "." || ww.Name == ".." {
			return nil, p.errAt("workload", i, "name", "%q: a workload name has no slash or space (it names a directory of the results)", ww.Name)
		}
		if j, ok := seen[ww.Name]; ok {
			return nil, p.errAt("workload", i, "name", "workload %q is declared twice (first at line %d)", ww.Name, p.loc.line("workload", j, ""))
		}
		seen[ww.Name] = i
		out = append(out, ww)
	}
	return out, nil
}

// probes checks a workload's verify_exec: a corpus entry has its own.
func (p *parser) probes(ww *Workload, w fileWorkload, i int) error {
	if len(w.VerifyExec) == 0 {
		return nil
	}
	if w.Corpus != "" {
		return p.errAt("workload", i, "verify_exec", "verify_exec goes with command or bundle: a corpus entry brings its own probe")
	}
	for _, argv := range w.VerifyExec {
		if len(argv) == 0 || argv[0] == "" {
			return p.errAt("workload", i, "verify_exec", "each probe is a non-empty argv, its first word a command: [[\"cmd\", \"arg\"]]")
		}
	}
	ww.VerifyExec = w.VerifyExec
	return nil
}

// bundle reads a workload's OCI bundle: its runtime spec must be one
// kata-cr runs, with its rootfs on this machine.
func (p *parser) bundle(ww *Workload, w fileWorkload, i int) error {
	for _, k := range []struct {
		set  bool
		name string
	}{{len(w.Include) > 0, "include"}, {w.Terminal, "terminal"}} {
		if k.set {
			return p.errAt("workload", i, k.name, "%s goes with command: a bundle's rootfs and spec bring their own", k.name)
		}
	}
	b, err := container.LoadBundle(p.path(w.Bundle))
	if err != nil {
		return p.errAt("workload", i, "bundle", "%v", err)
	}
	ww.Bundle, ww.bundle = b.Dir, b
	if ww.Name == "" {
		ww.Name = filepath.Base(b.Dir)
	}
	// A user's own workload is in the gate to be checkpointed.
	if ww.Expect == "" {
		ww.Expect = ExpectRestore
	}
	return nil
}

func (p *parser) cells(m *Matrix, fc []fileCell, kernels []Kernel, crius []CRIU, workloads []Workload, def Options) error {
	seen := map[string]int{}
	type pair struct{ k, c string }
	pairs := map[pair]int{}
	for i, c := range fc {
		if c.Kernel == "" {
			return p.errAt("cell", i, "kernel", "a cell names its kernel: one of the [[kernel]] names")
		}
		if c.CRIU == "" {
			return p.errAt("cell", i, "criu", "a cell names its CRIU: one of the [[criu]] names")
		}
		ki := slices.IndexFunc(kernels, func(k Kernel) bool { return k.Name == c.Kernel })
		if ki < 0 {
			return p.errAt("cell", i, "kernel", "%q is not a [[kernel]] of the matrix: use one of %s", c.Kernel, names(kernels, func(k Kernel) string { return k.Name }))
		}
		ci := slices.IndexFunc(crius, func(x CRIU) bool { return x.Name == c.CRIU })
		if ci < 0 {
			return p.errAt("cell", i, "criu", "%q is not a [[criu]] of the matrix: use one of %s", c.CRIU, names(crius, func(x CRIU) string { return x.Name }))
		}
		cell := Cell{Name: c.Name, Kernel: kernels[ki], CRIU: crius[ci], Options: def, Line: p.loc.line("cell", i, "")}
		if cell.Name == "" {
			cell.Name = c.Kernel + "/" + c.CRIU
		}
		if err := p.options(&cell.Options, c.fileOptions, "cell", i); err != nil {
			return err
		}
		cell.Workloads = workloads
		if len(c.Workloads) > 0 {
			cell.Workloads = nil
			for _, n := range c.Workloads {
				wi := slices.IndexFunc(workloads, func(w Workload) bool { return w.Name == n })
				if wi < 0 {
					return p.errAt("cell", i, "workloads", "%q is not a workload of the matrix (nor, without [[workload]], a corpus entry)", n)
				}
				cell.Workloads = append(cell.Workloads, workloads[wi])
			}
		}
		if len(c.Expect) > 0 {
			cell.Workloads = slices.Clone(cell.Workloads)
			for n, s := range c.Expect {
				wi := slices.IndexFunc(cell.Workloads, func(w Workload) bool { return w.Name == n })
				if wi < 0 {
					return p.errAt("cell", i, "expect", "%q is not a workload of this cell", n)
				}
				ex, err := p.expect("cell", i, "expect", s)
				if err != nil {
					return err
				}
				cell.Workloads[wi].Expect = ex
			}
		}
		if j, ok := seen[cell.Name]; ok {
			return p.errAt("cell", i, "name", "cell %q is declared twice (first at line %d)", cell.Name, p.loc.line("cell", j, ""))
		}
		pr := pair{c.Kernel, c.CRIU}
		if j, ok := pairs[pr]; ok && sameOptions(m.Cells[j].Options, cell.Options) {
			return p.errAt("cell", i, "", "cell %q runs kernel %q with CRIU %q like cell %q (line %d), with the same options: a duplicate cell",
				cell.Name, c.Kernel, c.CRIU, m.Cells[j].Name, m.Cells[j].Line)
		}
		seen[cell.Name] = i
		pairs[pr] = len(m.Cells)
		m.Cells = append(m.Cells, cell)
	}
	return nil
}

func sameOptions(a, b Options) bool {
	return a.AutoFix == b.AutoFix && (a.RuntimeSetsid == nil) == (b.RuntimeSetsid == nil) &&
		(a.RuntimeSetsid == nil || *a.RuntimeSetsid == *b.RuntimeSetsid)
}

func names[T any](xs []T, name func(T) string) string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = name(x)
	}
	return strings.Join(out, ", ")
}
