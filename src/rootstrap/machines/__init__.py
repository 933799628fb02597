"""The machinectl/systemd-nspawn layer over runner and store: settings files, the start
supervisor, systemd units, machine status. No argv parsing and no printing: cli/ does both.
"""
