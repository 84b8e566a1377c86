package main

import "errors"

// serveCmd runs the HTTP server. (Being built: see the HTTP API issue.)
type serveCmd struct{}

func (s *serveCmd) Run(e *env) error { return errors.New("serve: not built yet") }
