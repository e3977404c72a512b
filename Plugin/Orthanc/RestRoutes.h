#pragma once

#include "Orthanc/PluginContext.h"

namespace AzureDicom
{
// Registers the /azure-dicom routes. Every route reads the context through getContext(), which
// returns null while the plugin is disabled.
void RegisterRestRoutes(OrthancPluginContext* orthanc, PluginContext* (*getContext)());
}  // namespace AzureDicom
