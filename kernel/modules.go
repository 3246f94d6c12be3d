package kernel

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/kata-cr/kata-cr/internal/excerpt"
)

// ModulesDep is what depmod wrote about one kernel's modules: the modules
// and their dependencies (modules.dep), the modules built into the kernel
// (modules.builtin), soft dependencies (modules.softdep) and the aliases
// those name (modules.alias, modules.builtin.modinfo).
type ModulesDep struct {
	// Dir is the modules directory (/lib/modules/RELEASE), "" when parsed
	// from a reader.
	Dir string
	// paths maps a normalised module name to its file, relative to Dir.
	paths map[string]string
	// deps maps a normalised module name to the names it depends on.
	deps     map[string][]string
	builtin  map[string]bool
	softPre  map[string][]string
	softPost map[string][]string
	// aliases maps an exact alias to module names, in file order.
	aliases map[string][]string
	// order keeps module names in modules.dep order.
	order []string
}

// ModuleFile is one module file to load.
type ModuleFile struct {
	// Name is normalised: dashes become underscores.
	Name string
	// Path is the module file relative to the modules directory, e.g.
	// kernel/net/ipv4/tcp_diag.ko or kernel/lib/libcrc32c.ko.xz.
	Path string
	// Soft is true for a soft dependency (modules.softdep): modprobe loads
	// it when it can and goes on when it cannot, and so does LoadModules.
	Soft bool
}

// NormalizeModule turns a module name or file name into the kernel's form:
// without directory and .ko suffix, dashes as underscores.
func NormalizeModule(name string) string {
	name = path.Base(filepath.ToSlash(name))
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		name = strings.TrimSuffix(name, ext)
	}
	name = strings.TrimSuffix(name, ".ko")
	return strings.ReplaceAll(name, "-", "_")
}

// ParseModulesDep reads a modules.dep file: "path: dep-path dep-path ...".
func ParseModulesDep(r io.Reader) (*ModulesDep, error) {
	m := &ModulesDep{
		paths: map[string]string{}, deps: map[string][]string{}, builtin: map[string]bool{},
		softPre: map[string][]string{}, softPost: map[string][]string{}, aliases: map[string][]string{},
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		file, rest, ok := strings.Cut(line, ":")
		if !ok || file == "" || !strings.Contains(file, ".ko") {
			return nil, fmt.Errorf("modules.dep line %d: want \"path.ko: deps\", got %q", lineNo, excerpt.Clip(line, maxQuoteLen))
		}
		name := NormalizeModule(file)
		if _, dup := m.paths[name]; !dup {
			m.order = append(m.order, name)
		}
		m.paths[name] = file
		var deps []string
		for _, d := range strings.Fields(rest) {
			deps = append(deps, NormalizeModule(d))
		}
		m.deps[name] = deps
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read modules.dep: %w", err)
	}
	return m, nil
}

// LoadModulesDep reads the depmod files of a modules directory
// (/lib/modules/RELEASE). modules.dep is needed; the others are read when
// present.
func LoadModulesDep(modulesDir string) (*ModulesDep, error) {
	f, err := os.Open(filepath.Join(modulesDir, "modules.dep"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no modules.dep in %s: give the kernel's modules directory, or run depmod -b ROOT RELEASE on it", modulesDir)
		}
		return nil, fmt.Errorf("read modules.dep: %w", err)
	}
	defer f.Close()
	m, err := ParseModulesDep(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", modulesDir, err)
	}
	m.Dir = modulesDir
	if err := m.readOptional(modulesDir); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *ModulesDep) readOptional(dir string) error {
	for _, f := range []struct {
		name  string
		parse func([]byte)
	}{
		{"modules.builtin", m.parseBuiltin},
		{"modules.softdep", m.parseSoftdep},
		{"modules.alias", m.parseAlias},
		{"modules.builtin.modinfo", m.parseBuiltinModinfo},
	} {
		data, err := os.ReadFile(filepath.Join(dir, f.name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", f.name, err)
		}
		f.parse(data)
	}
	return nil
}

func (m *ModulesDep) parseBuiltin(data []byte) {
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			m.builtin[NormalizeModule(l)] = true
		}
	}
}

// parseSoftdep reads "softdep MODULE pre: A B post: C" lines.
func (m *ModulesDep) parseSoftdep(data []byte) {
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 || f[0] != "softdep" {
			continue
		}
		mod := NormalizeModule(f[1])
		target := &m.softPre
		for _, w := range f[2:] {
			switch w {
			case "pre:":
				target = &m.softPre
			case "post:":
				target = &m.softPost
			default:
				(*target)[mod] = append((*target)[mod], w)
			}
		}
	}
}

// parseAlias reads "alias NAME MODULE" lines, keeping exact names only:
// soft dependencies name exact aliases (crc32c), never patterns.
func (m *ModulesDep) parseAlias(data []byte) {
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 || f[0] != "alias" || strings.ContainsAny(f[1], "*?[") {
			continue
		}
		m.aliases[f[1]] = append(m.aliases[f[1]], NormalizeModule(f[2]))
	}
}

// parseBuiltinModinfo reads the NUL-separated "module.alias=NAME" entries
// of modules.builtin.modinfo: aliases that built-in code answers to.
func (m *ModulesDep) parseBuiltinModinfo(data []byte) {
	for _, e := range bytes.Split(data, []byte{0}) {
		mod, val, ok := strings.Cut(string(e), ".alias=")
		if !ok || strings.Contains(mod, "=") || strings.ContainsAny(val, "*?[") {
			continue
		}
		name := NormalizeModule(mod)
		m.builtin[name] = true
		m.aliases[val] = append(m.aliases[val], name)
	}
}

// Has reports whether name is a module file or built in.
func (m *ModulesDep) Has(name string) bool {
	n := NormalizeModule(name)
	_, ok := m.paths[n]
	return ok || m.builtin[n]
}

// Builtin reports whether name is built into the kernel.
func (m *ModulesDep) Builtin(name string) bool { return m.builtin[NormalizeModule(name)] }

// Path returns the file of module name relative to the modules directory.
func (m *ModulesDep) Path(name string) (string, bool) {
	p, ok := m.paths[NormalizeModule(name)]
	return p, ok
}

// Closure returns the modules to load, in load order, so that names and
// everything they need are in the kernel: hard dependencies from
// modules.dep first, soft "pre:" dependencies (resolved through aliases;
// marked Soft) before the module, "post:" ones after. Built-in modules are
// left out: they need no loading. A name that is neither a module nor
// built in is an error.
func (m *ModulesDep) Closure(names ...string) ([]ModuleFile, error) {
	c := closure{m: m, seen: map[string]bool{}}
	for _, n := range names {
		norm := NormalizeModule(n)
		if m.builtin[norm] {
			continue
		}
		if _, ok := m.paths[norm]; !ok {
			where := "modules.dep"
			if m.Dir != "" {
				where = filepath.Join(m.Dir, "modules.dep")
			}
			return nil, fmt.Errorf("module %s is neither in %s nor built into the kernel", n, where)
		}
		c.visit(norm, false)
	}
	return c.out, nil
}

type closure struct {
	m    *ModulesDep
	seen map[string]bool
	out  []ModuleFile
}

func (c *closure) visit(name string, soft bool) {
	if c.m.builtin[name] {
		return
	}
	if c.seen[name] {
		if !soft {
			// Needed for real by another module: no longer optional. Its
			// own dependencies are hardened too, as modules.dep lists them
			// all (transitively) for the module that needs it.
			for i := range c.out {
				if c.out[i].Name == name {
					c.out[i].Soft = false
				}
			}
		}
		return
	}
	p, ok := c.m.paths[name]
	if !ok {
		return
	}
	c.seen[name] = true
	for _, s := range c.m.softPre[name] {
		c.visitSoft(s)
	}
	// modules.dep lists every dependency, transitively; depmod orders the
	// list so that the last must be loaded first.
	deps := c.m.deps[name]
	for i := len(deps) - 1; i >= 0; i-- {
		c.visit(deps[i], soft)
	}
	c.out = append(c.out, ModuleFile{Name: name, Path: p, Soft: soft})
	for _, s := range c.m.softPost[name] {
		c.visitSoft(s)
	}
}

// visitSoft resolves a soft dependency, a module name or an alias (nf_tables
// needs "crc32c", which crc32c_generic or crc32c_intel provide), and adds
// every provider that is not built in.
func (c *closure) visitSoft(name string) {
	norm := NormalizeModule(name)
	if c.m.builtin[norm] {
		return
	}
	if _, ok := c.m.paths[norm]; ok {
		c.visit(norm, true)
		return
	}
	providers := c.m.aliases[name]
	for _, p := range providers {
		if c.m.builtin[p] {
			return
		}
	}
	for _, p := range providers {
		c.visit(p, true)
	}
}
