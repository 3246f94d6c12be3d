package kbuild

import (
	"fmt"
	"strings"
	"time"
)

// Result says what a build made, or what the cache held.
type Result struct {
	// SchemaVersion changes when the JSON form does.
	SchemaVersion int `json:"schema_version"`
	// Name is the built kernel's name in the cache (give it to
	// --kernel-version), Dir its directory, Kernel and Config its image
	// and .config, Release its uname -r.
	Name    string  `json:"name"`
	Dir     string  `json:"dir"`
	Kernel  string  `json:"kernel"`
	Config  string  `json:"config"`
	Release string  `json:"release"`
	Arch    string  `json:"arch"`
	Variant Variant `json:"variant"`
	// CRIUFragment is the CRIU fragment merged (in Dir), CRIUOptions the
	// options it sets; both empty for the stock variant.
	CRIUFragment string   `json:"criu_fragment,omitempty"`
	CRIUOptions  []string `json:"criu_options,omitempty"`
	// Fragments is the fragment tree, Merged how many of its files were
	// merged and Excluded those whose header excludes the arch.
	Fragments string   `json:"fragments"`
	Merged    int      `json:"merged"`
	Excluded  []string `json:"excluded,omitempty"`
	// Source is the kernel source used; Kata is the version Kata's
	// fragments are written for; VersionNote compares the two.
	Source      Source      `json:"source"`
	Kata        KataVersion `json:"kata"`
	VersionNote string      `json:"version_note"`
	// Whitelisted are the requested options that did not land but that
	// Kata's whitelist excuses.
	Whitelisted []Unlanded `json:"whitelisted,omitempty"`
	// Key is the hash of the inputs.
	Key string `json:"key"`
	// BuildSeconds is how long the build that made the kernel took, Jobs
	// its make -j, and Incremental whether it reused the object tree of
	// an earlier build of the same source and arch.
	BuildSeconds float64 `json:"build_seconds"`
	Jobs         int     `json:"jobs"`
	Incremental  bool    `json:"incremental"`
	BuiltAt      string  `json:"built_at"`
	// CacheHit is true when the kernel came from the cache; Seconds is how
	// long this call took.
	CacheHit bool    `json:"cache_hit"`
	Seconds  float64 `json:"seconds"`
}

// SchemaVersion is the JSON form's version.
const SchemaVersion = 1

// versionNote says which source version was used against which version
// Kata's fragments name.
func versionNote(src Source, k KataVersion) string {
	switch {
	case k.Kernel == "":
		return fmt.Sprintf("built from Linux %s; the fragment tree does not say which kernel Kata pins (no versions.yaml above it)", src.Version)
	case sameSeries(src.Version, k.Kernel):
		return fmt.Sprintf("built from Linux %s; Kata's fragments are for %s (%s): the same series", src.Version, k.Kernel, k.From)
	default:
		return fmt.Sprintf("built from Linux %s, not %s: Kata's fragments are written for %s (%s); options the older or newer source lacks are listed as whitelisted or refused",
			src.Version, k.Kernel, k.Kernel, k.From)
	}
}

func sameSeries(a, b string) bool {
	series := func(v string) string {
		p := strings.SplitN(v, ".", 3)
		if len(p) < 2 {
			return v
		}
		return p[0] + "." + p[1]
	}
	return series(a) == series(b)
}

func seconds(d time.Duration) float64 {
	return float64(d.Round(100*time.Millisecond)) / float64(time.Second)
}
