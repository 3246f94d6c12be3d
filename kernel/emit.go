package kernel

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/kata-cr/kata-cr/reports"
)

// EmitFragment writes a Kata-style kernel config fragment that turns on the
// missing requirements: a header comment saying what it is for, then for
// each requirement a comment with what breaks without it and the options to
// set, dependencies first. Options that have (the config being fixed, nil
// when unknown) already turns on are left out, so that the fragment adds
// only what is missing; an option that is needed only on older kernels
// (EXPERT for CHECKPOINT_RESTORE before 4.19) is set when have's version is
// older, and mentioned in a comment when the version is unknown.
//
// Comments name options without their CONFIG_ prefix: the kernel's
// merge_config.sh, which Kata's build runs, greps the merged fragments for
// each option as a whole word, and a comment that matched would count as a
// second requested value and fail Kata's build with "not in final .config".
func EmitFragment(have *Config, missing ...Requirement) []byte {
	var b bytes.Buffer
	b.WriteString("# CRIU checkpoint/restore support, written by kata-cr.\n")
	b.WriteString("#\n")
	b.WriteString("# Copy this file into the <arch>/ directory of Kata's kernel config\n")
	b.WriteString("# fragments (tools/packaging/kernel/configs/fragments) and rebuild the\n")
	b.WriteString("# guest kernel, or merge it into a .config with\n")
	b.WriteString("# scripts/kconfig/merge_config.sh.\n")
	if len(missing) == 0 {
		b.WriteString("\n# Nothing is missing.\n")
		return b.Bytes()
	}
	version := ""
	if have != nil {
		version = have.Version
	}
	written := map[string]bool{}
	had := func(opt string) bool { return have != nil && have.On(opt) }
	for _, r := range missing {
		fmt.Fprintf(&b, "\n# %s (%s): without it %s.\n", r.Title, r.Level, r.Breaks)
		var opts []string
		for _, d := range r.NeedsBefore {
			switch {
			case version == "":
				fmt.Fprintf(&b, "# On kernels before %s this also needs %s=y.\n", d.Release, d.Option)
			case olderThan(version, d.Release):
				opts = append(opts, d.Option)
			}
		}
		opts = append(opts, r.EnableOptions()...)
		var pending, above []string
		for _, o := range opts {
			switch {
			case had(o):
			case written[o]:
				above = append(above, o)
			default:
				pending = append(pending, o)
			}
		}
		for _, o := range pending {
			fmt.Fprintf(&b, "CONFIG_%s=y\n", o)
			written[o] = true
		}
		switch {
		case len(pending) > 0:
		case len(above) > 0:
			fmt.Fprintf(&b, "# Turned on by %s above.\n", strings.Join(above, ", "))
		case !had(r.Option):
			fmt.Fprintf(&b, "# %s stays off although %s are set: check its dependencies with make menuconfig.\n",
				r.Option, strings.Join(opts, ", "))
		}
	}
	return b.Bytes()
}

// olderThan reports whether kernel version v is before release; an
// unparsable v is not.
func olderThan(v, release string) bool {
	a, err := ParseRelease(v)
	if err != nil {
		return false
	}
	b, err := ParseRelease(release)
	if err != nil {
		return false
	}
	return a.Less(b)
}

// MissingFor returns the required and recommended requirements configs
// miss, each once: what EmitFragment is given to fix them.
func MissingFor(configs ...*Config) []Requirement {
	seen := map[string]bool{}
	var missing []Requirement
	for _, c := range configs {
		for _, req := range MissingAt(Evaluate(c), reports.Required, reports.Recommended) {
			if !seen[req.Option] {
				seen[req.Option] = true
				missing = append(missing, req)
			}
		}
	}
	return missing
}
