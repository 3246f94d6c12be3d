// Command kata-cr checks, checkpoints and restores containers inside Kata
// Containers guests with CRIU.
package main

import (
	"os"

	"github.com/kata-cr/kata-cr/cmd"
)

func main() {
	os.Exit(cmd.Main(os.Args[1:], os.Stdout, os.Stderr))
}
