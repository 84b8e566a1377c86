package main

import "testing"

func TestRespCounter(t *testing.T) {
	// Three commands, one with an argument that looks like a request, one empty
	// array, and an inline PING.
	stream := []byte("*2\r\n$3\r\nGET\r\n$4\r\n*1\r\n\r\n" +
		"*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$10\r\n$3\r\nabc\r\n\r\n" +
		"*0\r\n" + "PING\r\n" +
		"*1\r\n$4\r\nPING\r\n")
	const want = 5
	for cut := range len(stream) + 1 {
		var r respCounter
		if got := r.feed(stream[:cut]) + r.feed(stream[cut:]); got != want {
			t.Errorf("cut at %d: got %d commands, want %d", cut, got, want)
		}
	}
	var r respCounter
	var got int64
	for i := range stream {
		got += r.feed(stream[i : i+1])
	}
	if got != want {
		t.Errorf("a byte at a time: got %d commands, want %d", got, want)
	}
}
