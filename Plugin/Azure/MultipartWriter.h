#pragma once

#include <string>

namespace AzureDicom
{
// Builds a multipart/related body (RFC 2387) of DICOM instances for STOW-RS. Each part has the
// Content-Type exactly "application/dicom", because the Azure DICOM service responds with 415 to a
// part with parameters. The boundary is 128 random bits in hex; AddPart() throws
// Exception(InternalError) in the unlikely case that a part contains it.
class MultipartWriter
{
public:
  // Draws the boundary from OpenSSL's random generator. Throws Exception(InternalError) if the
  // generator fails.
  MultipartWriter();

  // Reserves room for the parts to come, to avoid copies of large bodies. bytes is the total size
  // of their instances and partCount their number, which adds the size of their headers.
  void Reserve(size_t bytes, size_t partCount = 0);

  // Appends one instance. Throws Exception(InternalError), leaving the body as it was, if the
  // instance contains the boundary or if Finish() was called.
  void AddPart(const std::string& dicom);
  void AddPart(const char* data, size_t size);

  // The value of the request's Content-Type header:
  // multipart/related; type="application/dicom"; boundary=...  (no "start" parameter, to which the
  // service responds with 400).
  std::string GetContentType() const;

  // Closes the body and returns it. Calling it again returns the same body. Throws
  // Exception(InternalError) when no part was added, because RFC 2046 requires at least one part
  // and a STOW-RS request without an instance has nothing to store.
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
