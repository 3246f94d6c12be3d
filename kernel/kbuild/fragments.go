package kbuild

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/kata-cr/kata-cr/kernel"
)

// plan is what a build merges: Kata's fragments in Kata's order, then the
// CRIU fragment, and the values they ask for.
type plan struct {
	root string
	// files are the fragment files, absolute, in merge order; criu is the
	// CRIU fragment's content ("" for the stock variant) and criuAdds the
	// options it sets.
	files    []string
	excluded []string
	criu     []byte
	criuAdds []string
	// requested maps each option a fragment sets or unsets to the value
	// the last one gives ("n" for unset).
	requested map[string]string
	// whitelist are the patterns of Kata's whitelist.conf (and
	// whitelist-VERSION.conf for the source's version).
	whitelist []string
}

// loadPlan merges the fragment tree the way Kata does (kernel.LoadFragments)
// and, for the CRIU variant, adds what kernel check --emit-fragment writes.
func loadPlan(o *Options) (*plan, error) {
	root, err := kernel.FragmentRoot(o.Fragments)
	if err != nil {
		return nil, &InputError{err}
	}
	merged, err := kernel.LoadFragments(o.Fragments, o.Arch)
	if err != nil {
		return nil, &InputError{err}
	}
	p := &plan{root: root, excluded: merged.Excluded, requested: map[string]string{}}
	for _, rel := range merged.Fragments {
		p.files = append(p.files, filepath.Join(root, rel))
	}
	for name := range merged.Origin {
		p.requested[name] = valueOf(merged, name)
	}
	if o.Variant == CRIU {
		missing := kernel.MissingFor(merged)
		p.criu = kernel.EmitFragment(merged, missing...)
		frag, err := kernel.Parse(bytes.NewReader(p.criu), "criu.conf")
		if err == nil { // a fragment with nothing to add has no option
			for name := range frag.Origin {
				p.requested[name] = valueOf(frag, name)
				p.criuAdds = append(p.criuAdds, name)
			}
		}
		sort.Strings(p.criuAdds)
	}
	return p, nil
}

func valueOf(c *kernel.Config, name string) string {
	if v, ok := c.Values[name]; ok {
		return v
	}
	return "n"
}

// key hashes every input that changes the kernel: the recipe, the arch,
// the source's checksum, each fragment's name and content in merge order
// and the CRIU fragment.
func (p *plan) key(o *Options, src *Source) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00", Recipe, o.Arch, src.SHA256, o.Variant)
	for _, f := range p.files {
		data, err := os.ReadFile(f)
		if err != nil {
			return "", &InputError{fmt.Errorf("read kernel config fragment: %w", err)}
		}
		rel, _ := filepath.Rel(p.root, f)
		fmt.Fprintf(h, "%s\x00%d\x00", rel, len(data))
		h.Write(data)
	}
	fmt.Fprintf(h, "criu\x00%d\x00", len(p.criu))
	h.Write(p.criu)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// loadWhitelist reads Kata's whitelist.conf and whitelist-VERSION.conf
// beside the fragments: patterns of options that may be missing from a
// kernel version without failing the build.
func (p *plan) loadWhitelist(version string) {
	p.whitelist = nil
	for _, name := range []string{"whitelist.conf", "whitelist-" + version + ".conf"} {
		data, err := os.ReadFile(filepath.Join(p.root, name))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(data), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				p.whitelist = append(p.whitelist, l)
			}
		}
	}
}

// Unlanded is an option a fragment asks for that the final .config does
// not have.
type Unlanded struct {
	Option    string `json:"option"`
	Requested string `json:"requested"`
	Actual    string `json:"actual"`
	// Whitelisted names the pattern of Kata's whitelist that excuses it.
	Whitelisted string `json:"whitelisted,omitempty"`
}

func (u Unlanded) String() string {
	return fmt.Sprintf("CONFIG_%s=%s (got %s)", u.Option, u.Requested, u.Actual)
}

// compare checks the final .config against what the fragments ask for, as
// Kata's build does after merge_config.sh: every requested value must be
// there, unless Kata's whitelist names the option. Kata greps
// merge_config.sh's "Value requested for CONFIG_X not in final .config"
// lines with the whitelist as patterns; a pattern matches here when the
// option's CONFIG_ name contains it.
func (p *plan) compare(final *kernel.Config) (refused, excused []Unlanded) {
	names := make([]string, 0, len(p.requested))
	for n := range p.requested {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		want, got := p.requested[n], valueOf(final, n)
		if want == got {
			continue
		}
		u := Unlanded{Option: n, Requested: want, Actual: got}
		for _, w := range p.whitelist {
			if strings.Contains("CONFIG_"+n, w) {
				u.Whitelisted = w
				break
			}
		}
		if u.Whitelisted != "" {
			excused = append(excused, u)
		} else {
			refused = append(refused, u)
		}
	}
	return refused, excused
}

// NotLandedError is a refusal: options the fragments ask for did not make
// the final .config.
type NotLandedError struct {
	Options []Unlanded
	Config  string
}

func (e *NotLandedError) Error() string {
	s := make([]string, len(e.Options))
	for i, u := range e.Options {
		s[i] = u.String()
	}
	return fmt.Sprintf("%d option(s) the fragments ask for did not make the final .config (not in Kata's whitelist): %s; the merged config is %s",
		len(e.Options), strings.Join(s, ", "), e.Config)
}
