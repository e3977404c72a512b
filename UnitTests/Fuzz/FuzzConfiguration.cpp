// Feeds arbitrary JSON to the configuration parser and to the runtime settings update. Either
// must accept the input or throw AzureDicom::Exception, never crash or throw anything else. The
// redacted form of an accepted configuration must parse again.

#include "Common/Exception.h"
#include "Common/Json.h"
#include "Sync/Configuration.h"
#include "Sync/RuntimeSettings.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace
{
Json::Value MakeFileSection()
{
  Json::Value section;
  section["ServiceUrl"] = "https://example.dicom.azurehealthcareapis.com";
  section["Credentials"]["Type"] = "None";
  return section;
}
}  // namespace


extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
  Json::Value input;
  std::string error;
  if (!AzureDicom::ParseJson(input, error, reinterpret_cast<const char*>(data), size))
  {
    return 0;
  }

  try
  {
    const AzureDicom::Configuration configuration = AzureDicom::ParseConfiguration(input);
    if (configuration.enable && configuration.credentials.type == AzureDicom::CredentialType::None)
    {
      AzureDicom::ParseConfiguration(AzureDicom::ToRedactedJson(configuration));
    }
  }
  catch (const AzureDicom::Exception&)
  {
  }

  if (input.isObject())
  {
    try
    {
      const Json::Value file = MakeFileSection();
      AzureDicom::UpdateOverrides(file, Json::Value(Json::objectValue), input);
    }
    catch (const AzureDicom::Exception&)
    {
    }
  }
  return 0;
}
