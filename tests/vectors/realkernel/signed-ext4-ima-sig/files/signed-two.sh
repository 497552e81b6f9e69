#!/bin/sh
echo signed-two
