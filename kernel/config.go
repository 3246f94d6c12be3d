// Package kernel reads kernel configurations from every place they are
// found (a .config, a gzip'd config, /proc/config.gz, an image with IKCONFIG,
// a Kata fragment tree) and holds the tables of what CRIU needs from a
// kernel. It is pure: no policy, no printing.
package kernel

import "strings"

// State is how an option is set in a config.
type State string

// The states of a tristate or bool option.
const (
	Enabled State = "enabled" // =y
	Module  State = "module"  // =m
	Missing State = "missing" // unset, =n, or "is not set"
)

// Config is a parsed kernel configuration.
type Config struct {
	// Values maps an option name without the CONFIG_ prefix to its value
	// as written (y, m, a number, a quoted string). Options set to n or
	// "is not set" are absent.
	Values map[string]string
	// Source names where the config was read from.
	Source string
}

// State returns how option name (with or without CONFIG_) is set.
func (c *Config) State(name string) State {
	v, ok := c.Values[strings.TrimPrefix(name, "CONFIG_")]
	switch {
	case !ok:
		return Missing
	case v == "m":
		return Module
	case v == "n" || v == "":
		return Missing
	default:
		return Enabled
	}
}
