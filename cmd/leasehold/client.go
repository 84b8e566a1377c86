package main

import "errors"

// The client commands. (Being built: see the CLI issue.)
type (
	acquireCmd struct{}
	renewCmd   struct{}
	releaseCmd struct{}
	getCmd     struct{}
	listCmd    struct{}
	runCmd     struct{}
)

var errNotBuilt = errors.New("not built yet")

func (c *acquireCmd) Run(e *env) error { return errNotBuilt }
func (c *renewCmd) Run(e *env) error   { return errNotBuilt }
func (c *releaseCmd) Run(e *env) error { return errNotBuilt }
func (c *getCmd) Run(e *env) error     { return errNotBuilt }
func (c *listCmd) Run(e *env) error    { return errNotBuilt }
func (c *runCmd) Run(e *env) error     { return errNotBuilt }
