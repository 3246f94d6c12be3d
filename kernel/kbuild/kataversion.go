package kbuild

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// KataVersion is the kernel version Kata's fragments are written for, as
// far as the tree around them tells.
type KataVersion struct {
	// Kernel is the version Kata pins (6.18.35), "" when unknown; From
	// says which file named it.
	Kernel string `json:"kernel,omitempty"`
	From   string `json:"from,omitempty"`
	// ConfigVersion is Kata's kata_config_version (the fragments' own
	// revision number, part of the installed kernel's name), "" when
	// there is none.
	ConfigVersion string `json:"config_version,omitempty"`
}

// sourceNote matches the fixture tree's SOURCE line naming the pin:
// "... (versions.yaml kernel v6.18.35)".
var sourceNote = regexp.MustCompile(`kernel v?([0-9]+\.[0-9]+(\.[0-9]+)?)`)

// kataVersion looks above the fragment root for Kata's versions.yaml
// (assets.kernel.version) and kata_config_version
// (tools/packaging/kernel/kata_config_version), and in the root for a
// SOURCE note.
func kataVersion(root string) KataVersion {
	var v KataVersion
	dir := root
	for i := 0; i < 6; i++ {
		if v.ConfigVersion == "" {
			if data, err := os.ReadFile(filepath.Join(dir, "kata_config_version")); err == nil {
				v.ConfigVersion = strings.TrimSpace(string(data))
			}
		}
		if v.Kernel == "" {
			if k := versionsYAMLKernel(filepath.Join(dir, "versions.yaml")); k != "" {
				v.Kernel, v.From = k, filepath.Join(dir, "versions.yaml")
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	if v.Kernel == "" {
		if data, err := os.ReadFile(filepath.Join(root, "SOURCE")); err == nil {
			if m := sourceNote.FindStringSubmatch(string(data)); m != nil {
				v.Kernel, v.From = m[1], filepath.Join(root, "SOURCE")
			}
		}
	}
	return v
}

// versionsYAMLKernel reads assets.kernel.version from Kata's versions.yaml
// with a line scan: the file is large and only this key is wanted.
func versionsYAMLKernel(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	inAssets, inKernel := false, false
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		indent := len(line) - len(strings.TrimLeft(line, " "))
		switch {
		case indent == 0:
			inAssets, inKernel = trimmed == "assets:", false
		case inAssets && indent == 2:
			inKernel = trimmed == "kernel:"
		case inKernel && indent == 4 && strings.HasPrefix(trimmed, "version:"):
			v := strings.Trim(strings.TrimSpace(strings.TrimPrefix(trimmed, "version:")), `"'`)
			return strings.TrimPrefix(v, "v")
		}
	}
	return ""
}

// KataVersionOf is what the tree around the fragment root dir says about
// the kernel version Kata pins.
func KataVersionOf(dir string) KataVersion { return kataVersion(dir) }
