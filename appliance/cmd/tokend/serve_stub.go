package main

// TEMPORARY: the coordinator replaces this file with serve.go (delete this
// file when serve.go defines runServe).

import (
	"context"
	"errors"
)

func runServe(ctx context.Context, env *serveEnv) error {
	return errors.New("serve is not wired yet")
}
