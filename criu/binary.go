// Package criu runs and asks the criu binary: its version, `criu check`,
// feature checks, and dump and restore through go-criu's swrk RPC.
package criu

// Binary is one criu executable.
type Binary struct {
	// Path is the absolute path of the executable.
	Path string
}
