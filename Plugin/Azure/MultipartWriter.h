#pragma once

#include <string>

namespace AzureDicom
{
// Builds a multipart/related body of DICOM instances for STOW-RS. Each part has the Content-Type
// exactly "application/dicom", because the Azure DICOM service answers 415 to a part with
// parameters. The boundary holds 128 random bits; AddPart() throws Exception(InternalError) in
// the unlikely case that a part contains it.
class MultipartWriter
{
public:
  MultipartWriter();

  // Reserves room for the total size of the parts to come, to avoid copies of large bodies.
  void Reserve(size_t bytes);

  void AddPart(const std::string& dicom);

  // The value of the request's Content-Type header:
  // multipart/related; type="application/dicom"; boundary=...  (no "start" parameter, which the
  // service answers 400 to).
  std::string GetContentType() const;

  // Closes the body and returns it; the writer must not be used afterwards.
  const std::string& Finish();

  size_t GetPartCount() const
  {
    return parts_;
  }

private:
  std::string boundary_;
  std::string body_;
  size_t parts_ = 0;
  bool finished_ = false;
};
}  // namespace AzureDicom
