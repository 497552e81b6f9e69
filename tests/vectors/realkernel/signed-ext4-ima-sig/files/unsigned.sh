#!/bin/sh
echo unsigned
