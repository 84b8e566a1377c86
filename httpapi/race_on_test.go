//go:build race

package httpapi_test

// raceEnabled: the race detector's instrumentation makes every frame
// larger, so stack sizes are not what a real build sees.
const raceEnabled = true
