package kernel

import (
	"fmt"
	"sort"
	"strings"
)

// A fragment tree says only what its fragments set; the kernel's
// merge_config.sh -n then runs allnoconfig, which turns off every option a
// user could answer but keeps the defaults of options nobody can answer: no
// prompt at all, or a prompt hidden behind EXPERT while EXPERT is off. It
// also turns on what an enabled option selects. kconfigFacts holds those
// facts (from Linux 6.1's Kconfig files) for the options CRIU needs and
// their dependencies, so that a fragment tree is judged as the kernel
// build would judge it: EVENTFD, which no Kata fragment sets, is on because
// MEMCG selects it.

type prompt int

const (
	promptAlways prompt = iota // allnoconfig answers n
	promptExpert               // visible only with EXPERT=y
	promptNone                 // never asked: the default applies
)

type kconfigSym struct {
	prompt prompt
	// def is the default: "y", or "=SYM" for def_tristate SYM, "" for n.
	def string
	// depends must all be on; "A|B" means either.
	depends    []string
	selectedBy []string
	// arches, for a symbol an architecture provides (def_bool y there).
	arches []string
}

var kconfigFacts = map[string]kconfigSym{
	"MULTIUSER":            {prompt: promptExpert, def: "y"},
	"PROC_FS":              {prompt: promptExpert, def: "y"},
	"PROC_SYSCTL":          {prompt: promptExpert, def: "y", depends: []string{"PROC_FS"}},
	"SYSCTL":               {prompt: promptNone, selectedBy: []string{"PROC_SYSCTL"}},
	"NAMESPACES":           {prompt: promptExpert, def: "y", depends: []string{"MULTIUSER"}},
	"UTS_NS":               {prompt: promptAlways, depends: []string{"NAMESPACES"}},
	"IPC_NS":               {prompt: promptAlways, depends: []string{"NAMESPACES", "SYSVIPC|POSIX_MQUEUE"}},
	"PID_NS":               {prompt: promptAlways, depends: []string{"NAMESPACES"}},
	"NET_NS":               {prompt: promptAlways, depends: []string{"NAMESPACES", "NET"}},
	"SYSVIPC_SYSCTL":       {prompt: promptNone, def: "y", depends: []string{"SYSVIPC", "SYSCTL"}},
	"FHANDLE":              {prompt: promptExpert, def: "y"},
	"EPOLL":                {prompt: promptExpert, def: "y"},
	"EVENTFD":              {prompt: promptExpert, def: "y", selectedBy: []string{"MEMCG"}},
	"MEMBARRIER":           {prompt: promptExpert, def: "y"},
	"PROC_PAGE_MONITOR":    {prompt: promptExpert, def: "y", depends: []string{"PROC_FS", "MMU"}, selectedBy: []string{"MEM_SOFT_DIRTY"}},
	"INET_TCP_DIAG":        {prompt: promptNone, def: "=INET_DIAG", depends: []string{"INET_DIAG"}},
	"MEM_SOFT_DIRTY":       {prompt: promptAlways, depends: []string{"CHECKPOINT_RESTORE", "HAVE_ARCH_SOFT_DIRTY", "PROC_FS"}},
	"MMU":                  {prompt: promptNone, arches: KataArches},
	"HAVE_ARCH_SOFT_DIRTY": {prompt: promptNone, arches: []string{"x86_64", "s390", "powerpc"}},
}

// resolveImplied adds to c the options of kconfigFacts that allnoconfig
// leaves on although no fragment sets them, and records why in Implied.
func resolveImplied(c *Config) {
	r := resolver{c: c, memo: map[string]resolved{}, busy: map[string]bool{}}
	names := make([]string, 0, len(kconfigFacts))
	for n := range kconfigFacts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, set := c.Values[n]; set {
			continue
		}
		if v := r.value(n); v.val != "" {
			c.Values[n] = v.val
			c.Implied[n] = v.why
		}
	}
}

type resolved struct{ val, why string }

type resolver struct {
	c    *Config
	memo map[string]resolved
	busy map[string]bool
}

func (r *resolver) on(name string) bool { return r.value(name).val != "" }

// value is the value allnoconfig gives name: "y", "m" or "" for off.
func (r *resolver) value(name string) (res resolved) {
	if v, ok := r.memo[name]; ok {
		return v
	}
	if r.busy[name] {
		return resolved{}
	}
	r.busy[name] = true
	defer func() { r.memo[name], r.busy[name] = res, false }()

	set, explicit := r.c.Values[name]
	f, known := kconfigFacts[name]
	if explicit {
		return resolved{val: set, why: "set in " + r.c.Origin[name]}
	}
	if !known {
		return resolved{}
	}
	if len(f.arches) > 0 {
		for _, a := range f.arches {
			if a == r.c.Arch {
				return resolved{val: "y", why: "provided by the " + a + " architecture"}
			}
		}
		return resolved{}
	}
	for _, d := range f.depends {
		if !r.anyOn(d) {
			return resolved{}
		}
	}
	for _, s := range f.selectedBy {
		if r.on(s) {
			return resolved{val: "y", why: "selected by CONFIG_" + s}
		}
	}
	visible := f.prompt == promptAlways || (f.prompt == promptExpert && r.on("EXPERT"))
	// A fragment's "is not set" counts only where the prompt is visible;
	// for an option nobody can answer, Kconfig keeps the default.
	if visible {
		return resolved{}
	}
	switch {
	case strings.HasPrefix(f.def, "="):
		from := f.def[1:]
		v := r.value(from)
		if v.val == "" {
			return resolved{}
		}
		return resolved{val: v.val, why: fmt.Sprintf("no prompt: follows CONFIG_%s=%s", from, v.val)}
	case f.def == "y":
		why := "no prompt: on by default"
		if f.prompt == promptExpert {
			why = "asked only with CONFIG_EXPERT=y, which is off: on by default"
		}
		if len(f.depends) > 0 {
			why += ", depends on " + strings.Join(f.depends, ", ")
		}
		return resolved{val: "y", why: why}
	}
	return resolved{}
}

func (r *resolver) anyOn(expr string) bool {
	for _, alt := range strings.Split(expr, "|") {
		if r.on(alt) {
			return true
		}
	}
	return false
}
