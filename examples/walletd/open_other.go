//go:build !unix

package main

// openNoFollow is 0 where there is no O_NOFOLLOW: readAuthorityFile still
// refuses what is not a regular file once it is open.
const openNoFollow = 0
