package main

import (
	"fmt"
	"runtime"
)

// version is the release version, set at link time:
//
//	go build -ldflags "-X main.version=1.2.3" ./appliance/cmd/tokend
//
// It is the one accepted package-level variable of this package: the linker
// writes it, nothing at run time does.
var version = "dev"

// versionString is what `tokend version` prints and what the serve command
// logs at start: "tokend 1.2.3 (go1.26.8 linux/amd64)".
func versionString() string {
	return fmt.Sprintf("tokend %s (%s %s/%s)", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
