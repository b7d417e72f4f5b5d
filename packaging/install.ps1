<#
.SYNOPSIS
    Installs setup-tool on a Windows server without internet, from the wheels beside this script.

.DESCRIPTION
    Part of the offline kit setup-tool-<version>-windows-x64.zip (make wheelhouse, or
    scripts/build_wheelhouse.py). It creates a virtual environment with the py launcher's
    64-bit CPython 3.12 or 3.11 and installs setup-tool and its dependencies with
    pip --no-index from .\wheels: nothing is downloaded. It then prints where setup-tool.exe is,
    and warns when no Microsoft ODBC driver for SQL Server is installed.

    Run it in PowerShell (as administrator for the default destination):
        Unblock-File .\install.ps1
        powershell -ExecutionPolicy Bypass -File .\install.ps1

    Exit code 0: installed (setup-tool --version answered). 1: not installed; the message says why.

.PARAMETER Destination
    The virtual environment's folder. Default: C:\Program Files\setup-tool. An existing
    installation there is upgraded in place.

.PARAMETER Python
    The CPython version to use, 3.12 or 3.11. Default: the newest of them the py launcher has.
#>
[CmdletBinding()]
param(
    [string]$Destination = (Join-Path $env:ProgramFiles 'setup-tool'),
    [ValidateSet('', '3.11', '3.12')]
    [string]$Python = ''
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0

function Stop-Install([string]$Message) {
    Write-Host "setup-tool was not installed: $Message" -ForegroundColor Red
    exit 1
}

$kit = Split-Path -Parent $MyInvocation.MyCommand.Path
$wheels = Join-Path $kit 'wheels'
if (-not (Get-ChildItem -Path $wheels -Filter 'setup_tool-*.whl' -ErrorAction SilentlyContinue)) {
    Stop-Install "no setup_tool wheel in $wheels. Unzip the whole kit and run install.ps1 from its folder."
}

# The py launcher comes with every python.org installer; "-3.12-64" asks for 64-bit 3.12.
if (-not (Get-Command 'py.exe' -ErrorAction SilentlyContinue)) {
    Stop-Install ('the py launcher (py.exe) is not installed. Install 64-bit Python 3.12 or ' +
        '3.11 from python.org (the offline installer, with "py launcher" ticked), then run this again.')
}
$candidates = if ($Python) { @($Python) } else { @('3.12', '3.11') }
$chosen = $null
foreach ($version in $candidates) {
    & py.exe "-$version-64" -c 'import sys' 2>$null
    if ($LASTEXITCODE -eq 0) { $chosen = $version; break }
}
if (-not $chosen) {
    Stop-Install ("no 64-bit CPython $($candidates -join ' or ') for the py launcher " +
        '(py --list shows what is installed). The kit has wheels for 64-bit CPython 3.11 and 3.12.')
}
Write-Host "Using CPython $chosen (64-bit) through the py launcher."

if (-not (Test-Path (Join-Path $Destination 'Scripts\python.exe'))) {
    Write-Host "Creating the virtual environment $Destination"
    & py.exe "-$chosen-64" -m venv $Destination
    if ($LASTEXITCODE -ne 0) { Stop-Install "py -$chosen-64 -m venv $Destination failed." }
}
$venvPython = Join-Path $Destination 'Scripts\python.exe'

# --no-index: the wheels of this kit and nothing else; PIP_CONFIG_FILE=NUL: no index or proxy
# from a pip.ini on this server either.
$env:PIP_CONFIG_FILE = 'NUL'
$env:PIP_DISABLE_PIP_VERSION_CHECK = '1'
& $venvPython -m pip install --no-index --find-links $wheels --upgrade setup-tool
if ($LASTEXITCODE -ne 0) { Stop-Install "pip could not install from $wheels (see above)." }

$exe = Join-Path $Destination 'Scripts\setup-tool.exe'
$installed = & $exe --version
if ($LASTEXITCODE -ne 0) { Stop-Install "$exe does not start." }

$drivers = @()
if (Get-Command 'Get-OdbcDriver' -ErrorAction SilentlyContinue) {
    $drivers = @(Get-OdbcDriver -Platform '64-bit' | Where-Object {
            $_.Name -match '^ODBC Driver \d+ for SQL Server$' })
}
if ($drivers.Count -eq 0) {
    Write-Warning ('No "ODBC Driver NN for SQL Server" is installed. Install Microsoft ODBC ' +
        'Driver 18 for SQL Server (msodbcsql.msi, x64) before connecting: without it setup-tool ' +
        "falls back to Windows' old built-in 'SQL Server' driver.")
}

Write-Host ''
Write-Host "Installed: $installed"
Write-Host "setup-tool.exe is here: $exe"
Write-Host "Logs and reports without a path given go to $(Join-Path $env:ProgramData 'setup-tool')"
exit 0
