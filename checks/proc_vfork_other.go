//go:build !amd64

package checks

// sysVfork is vfork(2)'s number; this architecture has none (clone
// serves).
const sysVfork = -1
