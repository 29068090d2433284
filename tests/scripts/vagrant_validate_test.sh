#!/usr/bin/env bash
# CTest script test: vagrant/Vagrantfile is a valid Vagrant configuration (`vagrant
# validate`, no VM booted). Vagrant's state goes to a temporary home, not the source tree.
# --ignore-provider: on a machine with only what scripts/install-deps installs there is no
# provider (no VM can boot here), and a plain `vagrant validate` stops at "No usable default
# provider" without judging the file. The file's own settings are still checked.
# usage: vagrant_validate_test.sh SOURCE_DIR
set -euo pipefail
home=$(mktemp -d /tmp/splicer-vagrant-test.XXXXXX)
trap 'rm -rf "$home"' EXIT
cd "$1/vagrant"
VAGRANT_HOME=$home/home VAGRANT_DOTFILE_PATH=$home/dot VAGRANT_CHECKPOINT_DISABLE=1 \
  vagrant validate --ignore-provider
