#!/bin/sh
echo "measured after kexec load"
