package testload

import (
	"context"
	"os"
	"strings"
	"syscall"
)

// ModeNestedUserns starts a beater in a new user namespace, root in it
// mapped to root of the container's.
const ModeNestedUserns = "nested-userns"

func init() {
	Register(Mode{Name: ModeNestedUserns, Description: "starts a beating child in a new user namespace (uid and gid 0 mapped to 0)", Run: runNestedUserns})
	registerWorkload(NewWorkload("nested-userns", "a child in a user namespace of its own, with uid and gid maps ("+Name+" "+ModeNestedUserns+")",
		ModeNestedUserns, nil, carriedKeys(ModeNestedUserns, beaterKeys("userns").and(stateKeys{same: []string{"userns_uid_map", "userns_gid_map", "userns_own"}}))))
}

func runNestedUserns(ctx context.Context, s *State, _ []string) error {
	self, err := os.Readlink("/proc/self/ns/user")
	if err != nil {
		return err
	}
	_, err = startSelf(&syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
	}, ModeBeater, "userns")
	if err != nil {
		return err
	}
	return readyAndBeat(ctx, s, func() ([]string, error) {
		kv, err := relayBeaters(ctx, "userns")
		if err != nil {
			return nil, err
		}
		pid := kvValue(kv, "userns_pid")
		ns, err := os.Readlink("/proc/" + pid + "/ns/user")
		if err != nil {
			return nil, err
		}
		own := "yes"
		if ns == self {
			own = "no: the child is in its parent's user namespace " + ns
		}
		kv = append(kv, "userns_own", own)
		for _, m := range []string{"uid_map", "gid_map"} {
			data, err := os.ReadFile("/proc/" + pid + "/" + m)
			if err != nil {
				return nil, err
			}
			kv = append(kv, "userns_"+m, strings.Join(strings.Fields(string(data)), " "))
		}
		return kv, nil
	})
}
