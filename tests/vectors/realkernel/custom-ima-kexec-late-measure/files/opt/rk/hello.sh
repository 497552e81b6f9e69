#!/bin/sh
echo "hello from $0 $1"
