package lease_test

import (
	"testing"

	"github.com/leasehold/leasehold/internal/redistest"
)

func redistestStart(t *testing.T) *redistest.Server { return redistest.Start(t) }
