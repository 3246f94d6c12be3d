package checks

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/kernel"
	"github.com/kata-cr/kata-cr/reports"
)

// KernelChecks returns the kernel configuration checks: one that says
// which config was read, and one per row of kernel's requirement table,
// with the stable ID kernel.OPTION. For an option built as a module on a
// live kernel, the check also looks whether the module is loaded, or can
// be loaded on demand, or at least is there to load.
func KernelChecks() []Check {
	mods := &moduleInfo{deps: map[string]modulesDepResult{}}
	out := []Check{{
		ID: "kernel.config", Category: "kernel", Level: reports.Recommended,
		Title: "kernel config readable", Needs: []Need{NeedConfig}, Run: checkKernelConfig,
	}}
	for _, r := range kernel.Requirements("") {
		out = append(out, Check{
			ID: "kernel." + r.Option, Category: "kernel", Level: r.Level,
			Title: fmt.Sprintf("CONFIG_%s (%s)", r.Option, r.Title),
			Needs: []Need{NeedConfig},
			Run: func(ctx context.Context, env *Env) []reports.Finding {
				return []reports.Finding{checkKernelOption(ctx, env, r, mods)}
			},
		})
	}
	return out
}

func checkKernelConfig(_ context.Context, env *Env) []reports.Finding {
	c := env.Config
	f := reports.Finding{Status: reports.Pass,
		Summary:  fmt.Sprintf("kernel config read from %s (%d options)", c.Source, len(c.Values)),
		Evidence: []string{"source: " + c.Source}}
	if c.Version != "" {
		f.Evidence = append(f.Evidence, "kernel version in its header: "+c.Version)
	}
	if c.Arch != "" {
		f.Evidence = append(f.Evidence, "arch: "+c.Arch)
	}
	if len(c.Fragments) > 0 {
		f.Evidence = append(f.Evidence, fmt.Sprintf("%d fragments merged, %d excluded for %s", len(c.Fragments), len(c.Excluded), c.Arch))
	}
	if c.BadLines > 0 {
		f.Status = reports.Warn
		f.Summary = c.Summary()
		f.Evidence = append(f.Evidence, c.Warnings...)
		f.Fix = &reports.Fix{Description: "check the config file: the lines quoted were skipped"}
	}
	return []reports.Finding{f}
}

// criuVersion is the version of env's criu, 0 when unknown.
func criuVersion(ctx context.Context, env *Env) int {
	if env.CRIU == nil {
		return 0
	}
	v, err := env.CRIU.Version(ctx)
	if err != nil {
		return 0
	}
	return v.Int()
}

func checkKernelOption(ctx context.Context, env *Env, r kernel.Requirement, mods *moduleInfo) reports.Finding {
	c := env.Config
	name := "CONFIG_" + r.Option
	f := reports.Finding{Level: r.Level, Evidence: []string{"source: " + c.Source}}
	if !r.AppliesTo(c.Arch) {
		f.Status = reports.Skip
		f.Reason = fmt.Sprintf("%s applies to %s only; this kernel is %s", name, strings.Join(r.Arches, ", "), c.Arch)
		return f
	}
	if v := criuVersion(ctx, env); v > 0 {
		f.Level = r.LevelFor(v)
		if f.Level != r.Level {
			f.Evidence = append(f.Evidence, fmt.Sprintf("%s for CRIU %s (this table says %s in general)", f.Level, criu.VersionFromInt(v), r.Level))
		}
	}
	st := c.Status(r)
	line := fmt.Sprintf("%s=%s: %s", name, st.Value, st.State)
	if st.State == kernel.Missing {
		line = fmt.Sprintf("%s is not set: %s", name, st.State)
	}
	if st.Origin != "" {
		line += " (" + st.Origin + ")"
	}
	f.Evidence = append(f.Evidence, line)
	if st.State != kernel.Missing {
		f.Evidence = append(f.Evidence, "without it: "+r.Breaks)
	}
	if r.MinCRIU > 0 {
		f.Evidence = append(f.Evidence, fmt.Sprintf("needed by CRIU %s and later", criu.VersionFromInt(r.MinCRIU)))
	}
	if r.RelaxedFrom > 0 {
		f.Evidence = append(f.Evidence, fmt.Sprintf("CRIU %s and later only warn without it", criu.VersionFromInt(r.RelaxedFrom)))
	}
	if r.Hint != "" {
		f.Evidence = append(f.Evidence, "note: "+r.Hint)
	}

	switch st.State {
	case kernel.Enabled:
		f.Status = reports.Pass
		f.Summary = fmt.Sprintf("%s=%s: %s", name, st.Value, r.Title)
		if st.Value == "y" {
			// Built in: nothing to load, whatever modules the kernel has.
			f.Summary = fmt.Sprintf("%s=y, built in: %s", name, r.Title)
		}
	case kernel.Missing:
		f.Status = failOrWarn(f.Level)
		f.Summary = fmt.Sprintf("%s is missing: %s", name, r.Breaks)
		f.Fix = &reports.Fix{Description: fmt.Sprintf(
			"add %s to the guest kernel config (kata-cr kernel check --emit-fragment FILE writes a Kata fragment)",
			strings.Join(assignments(toEnable(c, r)), " ")),
		}
	case kernel.Module:
		checkModule(env, r, mods, &f)
	}
	return f
}

// failOrWarn is the status of an unmet requirement at level.
func failOrWarn(l reports.Level) reports.Status {
	if l == reports.Required {
		return reports.Fail
	}
	return reports.Warn
}

// toEnable lists the options to set to turn r on that c does not have.
func toEnable(c *kernel.Config, r kernel.Requirement) []string {
	var out []string
	for _, o := range r.EnableOptions() {
		if o == r.Option || !c.On(o) {
			out = append(out, o)
		}
	}
	if len(out) == 0 {
		out = r.EnableOptions()
	}
	return out
}

func assignments(opts []string) []string {
	out := make([]string, len(opts))
	for i, o := range opts {
		out[i] = "CONFIG_" + o + "=y"
	}
	return out
}

// checkModule judges an option built as a module. On a config file
// (ProcRoot empty) it can only say that the module must be loaded; on a
// live kernel it looks whether it is.
func checkModule(env *Env, r kernel.Requirement, mods *moduleInfo, f *reports.Finding) {
	name := "CONFIG_" + r.Option
	mod := r.Module
	if mod == "" {
		mod = strings.ToLower(r.Option)
	}
	if env.ProcRoot == "" {
		f.Status = reports.Warn
		f.Summary = fmt.Sprintf("%s=m: module %s must be loaded before criu runs", name, mod)
		f.Fix = &reports.Fix{Description: fmt.Sprintf(
			"load %s in the guest before criu runs (kata-cr doctor --fix does), or build it in with %s=y", mod, name)}
		return
	}
	if where, ok := moduleLoaded(env, mod); ok {
		f.Status = reports.Pass
		f.Summary = fmt.Sprintf("%s=m, module %s loaded", name, mod)
		f.Evidence = append(f.Evidence, "loaded: "+where)
		return
	}
	if helper := autoloadHelper(env); helper != "" {
		f.Status = reports.Pass
		f.Summary = fmt.Sprintf("%s=m, module %s loads on demand", name, mod)
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s is not loaded; the kernel loads it when criu asks, through %s (%s)",
			mod, helper, filepath.Join(env.ProcRoot, "sys/kernel/modprobe")))
		return
	}
	f.Status = failOrWarn(f.Level)
	f.Summary = fmt.Sprintf("%s=m but module %s is not loaded: %s", name, mod, r.Breaks)
	f.Evidence = append(f.Evidence, fmt.Sprintf("%s is not in %s and no modprobe loads it on demand", mod, filepath.Join(env.ProcRoot, "modules")))
	path, err := mods.find(env.ModulesDir, mod)
	if err != nil {
		f.Evidence = append(f.Evidence, err.Error())
		f.Fix = &reports.Fix{Description: fmt.Sprintf(
			"install the modules of kernel %s (with modules.dep) and load %s, or build it in with %s=y", env.KernelRelease, mod, name)}
		return
	}
	f.Evidence = append(f.Evidence, "present: "+path)
	f.Fix = &reports.Fix{Description: fmt.Sprintf("load module %s and its dependencies", mod),
		AutoFixable: true, Fixer: FixerIDLoadModule}
}

// moduleLoaded looks for mod in /proc/modules, then /sys/module.
func moduleLoaded(env *Env, mod string) (string, bool) {
	mod = kernel.NormalizeModule(mod)
	procModules := filepath.Join(env.ProcRoot, "modules")
	if fh, err := os.Open(procModules); err == nil {
		defer fh.Close()
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) > 0 && kernel.NormalizeModule(f[0]) == mod {
				return procModules, true
			}
		}
	}
	if env.SysRoot != "" {
		p := filepath.Join(env.SysRoot, "module", mod)
		if _, err := os.Stat(p); err == nil {
			return p, true
		}
	}
	return "", false
}

// autoloadHelper returns the modprobe the kernel runs to load a module
// on demand (sock_diag, nfnetlink and /dev/net/tun all ask for theirs),
// "" when there is none: a Kata guest has no modprobe, so nothing loads
// the diag modules there unless kata-cr does.
func autoloadHelper(env *Env) string {
	data, err := os.ReadFile(filepath.Join(env.ProcRoot, "sys/kernel/modprobe"))
	if err != nil {
		return ""
	}
	helper := strings.TrimSpace(string(data))
	if helper == "" {
		return ""
	}
	if disabled, err := os.ReadFile(filepath.Join(env.ProcRoot, "sys/kernel/modules_disabled")); err == nil &&
		strings.TrimSpace(string(disabled)) == "1" {
		return ""
	}
	if fi, err := os.Stat(helper); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return ""
	}
	return helper
}

// moduleInfo caches modules.dep per directory for the checks of one
// KernelChecks call.
type moduleInfo struct {
	mu   sync.Mutex
	deps map[string]modulesDepResult
}

type modulesDepResult struct {
	dep *kernel.ModulesDep
	err error
}

// find returns where module mod lies in dir, or why it cannot be loaded
// from there.
func (m *moduleInfo) find(dir, mod string) (string, error) {
	if dir == "" {
		return "", errors.New("no modules directory known for this kernel")
	}
	m.mu.Lock()
	res, ok := m.deps[dir]
	if !ok {
		res.dep, res.err = kernel.LoadModulesDep(dir)
		m.deps[dir] = res
	}
	m.mu.Unlock()
	if res.err != nil {
		return "", res.err
	}
	mods, err := res.dep.Closure(mod)
	if err != nil {
		return "", err
	}
	var missing []string
	for _, x := range mods {
		if _, err := os.Stat(filepath.Join(dir, x.Path)); err != nil && !x.Soft {
			missing = append(missing, x.Path)
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("modules.dep in %s lists %s but the file is not there", dir, strings.Join(missing, ", "))
	}
	p, _ := res.dep.Path(mod)
	return filepath.Join(dir, p), nil
}

// ModuleFixer loads the module behind a failed kernel.OPTION finding, with
// its dependencies, from env.ModulesDir. It needs root.
func ModuleFixer() Fixer {
	return Fixer{
		ID:    FixerIDLoadModule,
		Title: "load kernel modules",
		Apply: func(_ context.Context, env *Env, f reports.Finding) (reports.Action, error) {
			opt := strings.TrimPrefix(f.ID, "kernel.")
			r, ok := kernel.Lookup(opt)
			if !ok || r.Module == "" {
				return reports.Action{}, fmt.Errorf("finding %s names no kernel module", f.ID)
			}
			a := reports.Action{Summary: "load module " + r.Module}
			if !env.Root {
				return a, errors.New("loading modules needs root: run kata-cr as root")
			}
			if env.ModulesDir == "" {
				return a, errors.New("no modules directory known for this kernel")
			}
			loaded, err := kernel.LoadModules(env.ModulesDir, r.Module)
			if err != nil {
				if len(loaded) > 0 {
					a.Summary = fmt.Sprintf("loaded %s, then failed", strings.Join(loaded, ", "))
				}
				return a, err
			}
			a.Applied = true
			switch {
			case len(loaded) == 0:
				a.Summary = fmt.Sprintf("module %s was already loaded", r.Module)
			case len(loaded) == 1:
				a.Summary = "loaded module " + loaded[0]
			default:
				a.Summary = fmt.Sprintf("loaded module %s with %s", loaded[len(loaded)-1], strings.Join(loaded[:len(loaded)-1], ", "))
			}
			a.Summary += " from " + env.ModulesDir
			if len(loaded) > 0 {
				// What CRIU cached of the kernel predates the module.
				if err := criu.ForgetKerndat(); err != nil {
					a.Summary += "; " + err.Error()
				}
			}
			return a, nil
		},
	}
}
